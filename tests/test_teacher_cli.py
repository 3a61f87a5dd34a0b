"""End-to-end teacher commands on a tiny synthetic set: train, resume, eval, release, user errors; the training loader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from facelm.annotations import Sample
from facelm.cli import main as facelm
from facelm.dataset import LandmarkCrops, LoadedSource, Source, set_loader_threads
from facelm.errors import UserError
from facelm.schemes import get_scheme
from facelm.teacher.loader_bench import images_per_second
from facelm.training import named_run
from tests.conftest import write_300w_folder


def _train(tiny_300w, heldout, out, *extra):
    return facelm([
        "train-teacher", "--source", f"300w:68:{tiny_300w}", "--eval-data", str(heldout), "--test-data", str(heldout),
        "--input-size", "64", "--batch-size", "4", "--max-steps", "2", "--workers", "0", "--eval-every", "1",
        "--out", str(out), *extra,
    ])


@pytest.fixture(scope="module")
def trained_run(tiny_300w, tiny_heldout, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert _train(tiny_300w, tiny_heldout, out, "--epochs", "2", "--name", "smoke") == 0
    (run,) = out.iterdir()
    return run


def test_run_folder_holds_config_fingerprint_metrics_and_artefacts(trained_run):
    for name in ("config.json", "data_fingerprint.json", "metrics.jsonl", "metrics.json", "eval_report.json",
                 "last.pt", "train.log", "ced.png", "training_curves.png"):
        assert (trained_run / name).is_file(), name
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    fingerprint = json.loads((trained_run / "data_fingerprint.json").read_text())
    assert fingerprint["sources"]["300w"]["n_images"] == 12 and len(fingerprint["sha256"]) == 64
    report = json.loads((trained_run / "eval_report.json").read_text())
    assert {"n", "nme", "fr10", "auc10", "regions", "spearman_conf_error"} <= set(report)


def _train_epochs(tiny_300w, heldout, out, *extra):
    """Two whole epochs of 3 steps (12 faces, batch 4), evaluated at the end only."""
    return facelm(["train-teacher", "--source", f"300w:68:{tiny_300w}", "--eval-data", str(heldout),
                   "--test-data", str(heldout), "--input-size", "64", "--batch-size", "4", "--workers", "0",
                   "--epochs", "2", "--eval-every", "2", "--out", str(out), *extra])


def _states_differ(a: dict, b: dict) -> list[str]:
    """Keys of two (nested) state dicts whose tensors or values are not identical."""
    if isinstance(a, dict):
        return [f"{k}.{sub}".rstrip(".") for k in a for sub in (_states_differ(a[k], b[k]) if k in b else ["missing"])]
    if torch.is_tensor(a):
        return [] if torch.equal(a, b) else [""]
    if isinstance(a, (list, tuple)):
        return [f"{i}.{sub}".rstrip(".") for i, (x, y) in enumerate(zip(a, b)) for sub in _states_differ(x, y)]
    return [] if a == b else [""]


def test_resume_continues_the_same_run(tiny_300w, tiny_heldout, tmp_path, monkeypatch):
    """A run interrupted after its first epoch and resumed ends with the model, optimizer, schedule and EMA of the
    same run left uninterrupted, bit for bit, and numbers its epochs on; its model card says it was resumed."""
    import facelm.engine as engine

    # pinned: auto precision times both on a loaded machine and could pick differently for the two runs
    assert _train_epochs(tiny_300w, tiny_heldout, tmp_path / "whole", "--name", "whole", "--precision", "fp32") == 0
    train_one_epoch, epochs = engine.train_one_epoch, []

    def interrupted_in_epoch_two(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 2:
            raise KeyboardInterrupt
        return train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_epoch_two)
    assert _train_epochs(tiny_300w, tiny_heldout, tmp_path / "cut", "--name", "cut", "--precision", "fp32") == 130
    monkeypatch.undo()
    (whole,), (cut,) = (tmp_path / "whole").iterdir(), (tmp_path / "cut").iterdir()
    assert _train_epochs(tiny_300w, tiny_heldout, tmp_path / "cut", "--resume", str(cut / "last.pt")) == 0
    expected, resumed = (torch.load(run / "last.pt", weights_only=False) for run in (whole, cut))
    for key in ("model", "optimizer", "scheduler", "ema_module"):
        assert not _states_differ(expected[key], resumed[key]), (key, _states_differ(expected[key], resumed[key])[:5])
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert facelm(["release", "--run", str(cut), "--out", str(tmp_path / "weights"), "--docs", str(tmp_path / "docs")]) == 0
    assert "Resumed with `--resume`" in (tmp_path / "weights" / "teacher_resnet18.md").read_text()


def test_eval_and_release(tiny_300w, tiny_heldout, trained_run, tmp_path):
    report_path = tmp_path / "report.json"
    assert facelm(["eval", "--model", str(trained_run / "last.pt"), "--data", str(tiny_300w), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n"] == 12 and report["head"] == "300w" and set(report["regions"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert report_path.with_suffix(".ced.png").is_file()
    compared = tmp_path / "compared.json"
    assert facelm(["eval", "--model", str(trained_run / "last.pt"), "--data", str(tiny_300w), "--report", str(compared),
                   "--reference", str(trained_run / "last.pt")]) == 0
    itself = json.loads(compared.read_text())["reference"]
    assert itself["distance"] == pytest.approx(0.0, abs=1e-6) and itself["nme"] == pytest.approx(report["nme"], abs=1e-4)
    assert facelm(["release", "--run", str(trained_run), "--out", str(tmp_path / "weights"),
                   "--docs", str(tmp_path / "docs")]) == 0
    assert (tmp_path / "docs" / "teacher_resnet18_ced.png").is_file()
    assert json.loads((tmp_path / "weights" / "teacher_resnet18.json").read_text())["metrics"]["n"] == 6  # held out
    card = (tmp_path / "weights" / "teacher_resnet18.md").read_text()
    assert "sha256" in card and "NME" in card
    assert "--epochs " in card and "--device cpu" in card and "-core " in card  # the recipe and the machine it ran on
    assert "Resumed with" not in card  # no test resumes this run: test_resume_continues_the_same_run trains its own
    assert f"Test: `{tiny_heldout.parent.name}/{tiny_heldout.name}`" in card and str(tiny_heldout) not in card  # any root
    released_report = tmp_path / "released.json"
    assert facelm(["eval", "--model", str(tmp_path / "weights" / "teacher_resnet18.pt"), "--data", str(tiny_300w),
                   "--report", str(released_report)]) == 0
    assert abs(json.loads(released_report.read_text())["nme"] - report["nme"]) < 0.05  # fp16 release keeps accuracy


def test_a_two_stage_row_shows_the_start_and_the_epochs_it_differs_in(tmp_path):
    """`--vary init epochs`: a fine-tune from a pretrained run against the fresh start of equal compute, each option a
    column, and the shared schedule says nothing of the epochs."""
    from facelm.reports.readme import _ablation
    from facelm.teacher.ablation import ablation_rows

    base = {"arch": "resnet18", "input_size": 112, "batch_size": 64, "lr": 0.002, "seed": 0, "loss": "l1"}
    report = {"nme": 3.8, "fr10": 0.0, "auc10": 0.6, "spearman_conf_error": -0.4, "train_wall_seconds": 60, "data": "v",
              "test": {"nme": 3.6, "data": "c"}}
    fresh = _finished_run(tmp_path / "fresh", base | {"epochs": 100, "init": None}, report)
    tuned = _finished_run(tmp_path / "tuned", base | {"epochs": 50, "init": "runs/pre/last.pt"}, report | {"nme": 3.7})
    rows, schedule = ablation_rows([fresh, tuned], ["init", "epochs"])
    assert [(r["init"], r["epochs"]) for r in rows] == [("runs/pre/last.pt", "50"), ("none", "100")]
    text = _ablation({"schedule": schedule, "vary": "init", "also_varied": ["epochs"], "rows": rows})
    assert text.startswith("Same schedule for every row: resnet18, 112 px, batch 64, lr 0.002, seed 0; only `--init` "
                           "and `--epochs` differ.")
    assert "| init | epochs | NME % |" in text and "| runs/pre/last.pt | 50 | 3.700 |" in text


def test_the_stage_pretrains_on_the_labellers_photos_then_trains_the_sources_from_those_weights(
        tiny_300w, tiny_heldout, tmp_path, monkeypatch):
    """`facelm teacher --pretrain dlib`: the photos' labels feed a first run on them alone, and the second run starts
    from its last.pt; the two share --epochs; and the stage refuses a second start point or a split it cannot make."""
    from facelm.teacher import pseudo_label

    (tmp_path / "photos").mkdir()
    photos = write_300w_folder(tmp_path / "photos", 8, seed=5)
    asked = []
    monkeypatch.setattr(pseudo_label, "main", lambda a: (asked.append(a.labeller), [photos])[1])
    argv = ["teacher", "--source", f"300w:68:{tiny_300w}", "--eval-data", str(tiny_heldout), "--test-data",
            str(tiny_heldout), "--input-size", "64", "--batch-size", "4", "--max-steps", "1", "--workers", "0",
            "--precision", "fp32", "--out", str(tmp_path / "runs"), "--name", "two", "--pretrain", "dlib"]
    assert facelm([*argv, "--epochs", "3", "--pretrain-epochs", "1"]) == 0
    # both runs can start within one second, so their folders are found by name, not by sort order
    first, second = named_run(tmp_path / "runs", "two-pretrain"), named_run(tmp_path / "runs", "two")
    assert asked == ["dlib"] and len(list((tmp_path / "runs").iterdir())) == 2 and first and second
    first_args = json.loads((first / "config.json").read_text())["args"]
    assert first_args["source"] == [f"dlib68:68:{photos}"] and first_args["eval_head"] == "dlib68"
    assert first_args["epochs"] == 1 and first_args["steps_per_epoch"] == 78
    second_args = json.loads((second / "config.json").read_text())["args"]
    assert second_args["init"] == str(first / "last.pt") and second_args["epochs"] == 2
    assert second_args["source"] == [f"300w:68:{tiny_300w}"]
    for extra, message in ((["--epochs", "2", "--pretrain-epochs", "2"], "must be between 0 and --epochs"),
                           (["--init", str(first / "last.pt")], "--init and --pretrain both set")):
        with pytest.raises(UserError, match=message):
            from facelm.teacher import stage

            stage.train_in_stages(stage.get_args_parser().parse_args([*argv[1:], *extra]))


def test_a_two_stage_release_names_the_first_stage_and_its_label_licence(tiny_300w, tiny_heldout, tmp_path):
    """`--init`: the weights hold the first stage's faces too, so the card names that run, its sources and the licence
    of its machine labels; with the first stage's folder gone the release stops in one line and writes no card."""
    (tmp_path / "pseudo").mkdir()
    labelled = write_300w_folder(tmp_path / "pseudo", 12, seed=3)
    (labelled / "provenance.json").write_text(json.dumps({"labeller": "dlib-test", "licence": "non-commercial only"}))
    first, second = tmp_path / "first", tmp_path / "second"
    assert _train(labelled, tiny_heldout, first, "--epochs", "1", "--source", f"dlib68:68:{labelled}",
                  "--eval-head", "dlib68", "--precision", "fp32") == 0
    (first_run,) = first.iterdir()
    assert _train(tiny_300w, tiny_heldout, second, "--epochs", "1", "--init", str(first_run / "last.pt"),
                  "--precision", "fp32") == 0
    (second_run,) = second.iterdir()
    assert facelm(["release", "--run", str(second_run), "--out", str(tmp_path / "weights"),
                   "--docs", str(tmp_path / "docs")]) == 0
    card = (tmp_path / "weights" / "teacher_resnet18.md").read_text()
    assert f"Started from the weights of `{first_run}`" in card and "`dlib68` (12 images" in card
    assert "Labels from dlib-test: non-commercial only." in card and "(sources: `300w`, `dlib68`;" in card

    (first_run / "data_fingerprint.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "facelm.cli", "release", "--run", str(second_run), "--out",
                           str(tmp_path / "again"), "--docs", str(tmp_path / "docs")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "that run's folder is gone" in proc.stderr
    assert not (tmp_path / "again").exists()


def test_user_errors_are_one_line_without_traceback(tiny_300w, tmp_path):
    cases = [
        ["eval", "--model", str(tmp_path / "missing.pt"), "--data", str(tiny_300w), "--report", str(tmp_path / "r.json")],
        ["eval", "--data", str(tiny_300w), "--report", str(tmp_path / "r.json"), "--reference", str(tmp_path / "gone.pt")],
        ["train-teacher", "--source", f"300w:98:{tiny_300w}", "--out", str(tmp_path)],
        ["train-teacher", "--source", f"300w:68:{tmp_path / 'nope'}", "--out", str(tmp_path)],
        ["train-teacher", "--source", "300w-no-scheme", "--out", str(tmp_path)],
        ["train-teacher", "--source", f"300w:68:{tiny_300w}", "--source-share", "wflw=0.5", "--out", str(tmp_path)],
    ]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "facelm.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_source_shares_name_some_sources_and_split_the_rest_by_size():
    from facelm.teacher.train import parse_source_shares, source_shares

    sizes = {"300w": 100, "ytf68": 300, "wflw": 600}
    assert source_shares(sizes, parse_source_shares([], list(sizes))) == pytest.approx([0.1, 0.3, 0.6])
    assert source_shares(sizes, parse_source_shares(["300w=0.5"], list(sizes))) == pytest.approx([0.5, 1 / 6, 1 / 3])
    both = parse_source_shares(["300w=0.25", "ytf68=0.75"], ["300w", "ytf68"])
    assert source_shares({"300w": 100, "ytf68": 300}, both) == pytest.approx([0.25, 0.75])
    for bad in (["300w=1.0"], ["300w=0.5", "ytf68=0.5", "wflw=0.2"], ["300w=x"], ["300w=0"], ["lfpw=0.5"]):
        with pytest.raises(UserError):
            parse_source_shares(bad, list(sizes))
    with pytest.raises(UserError):
        parse_source_shares(["300w=0.5"], ["300w"])


def test_source_share_sets_each_heads_share_of_the_batches(tiny_300w, tiny_heldout, tmp_path):
    from facelm.training import group_share_sampler

    draws = torch.tensor(list(group_share_sampler([100, 900], [0.8, 0.2], 20000, seed=0)))
    assert abs((draws < 100).float().mean().item() - 0.8) < 0.02 and draws.max() < 1000
    assert _train(tiny_300w, tiny_heldout, tmp_path, "--source", f"ytf68:68:{tiny_300w}", "--source-share", "300w=0.75",
                  "--epochs", "1") == 0


def _stage(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    return subprocess.run([sys.executable, "-m", "facelm.cli", *argv], capture_output=True, text=True, env=env)


def test_teacher_stage_without_data_says_what_it_skipped(tmp_path):
    proc = _stage("teacher", "--released", str(tmp_path / "none.pt"))
    assert "SKIPPED teacher training" in proc.stdout
    assert proc.returncode == 2 and "no released teacher" in proc.stderr


@pytest.mark.parametrize("stage", ["teacher", "student", "export"])
def test_a_named_but_missing_data_root_is_an_error_never_a_skip(stage, tmp_path):
    for data in (tmp_path / "typo", tmp_path):  # missing, and a folder without the datasets
        proc = _stage(stage, "--data", str(data))
        assert proc.returncode == 2 and "SKIPPED" not in proc.stdout, proc.stdout
        assert proc.stderr.count("\n") == 1 and f"DATA={data}" in proc.stderr, proc.stderr


def test_steps_per_epoch_sets_the_epoch_length_with_or_without_source_shares(tiny_300w, tiny_heldout, tmp_path):
    from facelm.teacher.train import epoch_sampling

    for shares in (None, [0.5, 0.5]):
        sampler = epoch_sampling([12, 4], shares, batch_size=4, steps_per_epoch=7, seed=0)
        assert len(list(sampler)) == 28
    assert sorted(epoch_sampling([12, 4], None, batch_size=4, steps_per_epoch=None, seed=0)) == list(range(16))
    draws = list(epoch_sampling([12, 4], [0.5, 0.5], 4, 2000, 0))
    assert 0.45 < sum(i >= 12 for i in draws) / len(draws) < 0.55
    with pytest.raises(UserError, match="at least one step"):
        epoch_sampling([12], None, 4, 0, 0)
    assert facelm([
        "train-teacher", "--source", f"300w:68:{tiny_300w}", "--eval-data", str(tiny_heldout), "--input-size", "64",
        "--batch-size", "4", "--steps-per-epoch", "5", "--epochs", "1", "--workers", "0", "--out", str(tmp_path),
    ]) == 0
    (run,) = tmp_path.iterdir()
    assert "5 steps/epoch" in (run / "train.log").read_text()


class _ThreadCount(torch.utils.data.Dataset):
    """Each item is the number of OpenCV threads in the process that built it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return cv2.getNumThreads()


def test_loader_workers_run_opencv_on_one_thread_and_the_main_process_gets_its_default_back():
    default = cv2.getNumThreads()
    set_loader_threads(2)
    seen = {int(n) for batch in torch.utils.data.DataLoader(_ThreadCount(), batch_size=2, num_workers=2) for n in batch}
    assert seen == {1}
    set_loader_threads(0)
    assert cv2.getNumThreads() == default


def test_loader_bench_times_more_batches_than_one_pass_over_the_faces(monkeypatch):
    """10 faces, 3 timed batches of 64 after one untimed: a clock that advances 1 ms per crop made reads 1000 img/s
    only when exactly the timed batches' 192 crops are counted and timed."""
    import facelm.teacher.loader_bench as loader_bench

    rng = np.random.default_rng(0)
    points = rng.uniform(30, 90, (68, 2)).astype(np.float32)
    loaded = LoadedSource(Source("tiny", get_scheme("68"), Path("tiny")),
                          [Sample(Path(f"{i}.png"), points) for i in range(10)],
                          [rng.integers(0, 255, (120, 120, 3), np.uint8) for _ in range(10)],
                          [np.ones(68, np.float32)] * 10)
    made = []
    crop = LandmarkCrops.__getitem__
    monkeypatch.setattr(LandmarkCrops, "__getitem__", lambda self, index: (made.append(index), crop(self, index))[1])
    monkeypatch.setattr(loader_bench, "time", SimpleNamespace(perf_counter=lambda: len(made) / 1000))
    rate = images_per_second(LandmarkCrops([loaded], 32, train=True), workers=0, batches=3)
    assert len(made) == 4 * 64 and set(made) == set(range(10))
    assert rate == pytest.approx(1000)


def _finished_run(folder: Path, args: dict, metrics: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"args": args}))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_ablation_rows_vary_several_options_together_and_name_sources(tmp_path):
    """`--vary source source_share`: a source added at a share is one row apart; rows name their sources; a run that
    also differs in anything else is refused; with no validation split the table says nothing was chosen on it."""
    from facelm.teacher.ablation import ablation_rows

    base = {"arch": "resnet18", "epochs": 8, "batch_size": 64, "lr": 0.002, "seed": 0, "loss": "l1", "head_type": "fc"}
    report = {"nme": 5.0, "fr10": 1.0, "auc10": 0.5, "spearman_conf_error": -0.2, "train_wall_seconds": 60, "data": "t",
              "test": {"nme": 5.0, "data": "t"}}
    shared = _finished_run(tmp_path / "a", base | {"source": ["300w:68:x", "wflw:98:y"], "source_share": ["wflw=0.3"]},
                           report)
    alone = _finished_run(tmp_path / "b", base | {"source": ["wflw:98:y"], "source_share": []}, report | {"nme": 6.0})
    rows, schedule = ablation_rows([shared, alone], ["source", "source_share"])
    assert schedule["epochs"] == 8 and "source" not in schedule
    assert [r["source"] for r in rows] == ["300w + wflw", "wflw"]
    assert rows[0]["ranked_on"].startswith("nothing: the in-loop faces are the test faces")
    with pytest.raises(UserError, match="more than --vary source"):
        ablation_rows([shared, alone], ["source"])


def test_ablation_table_gives_each_row_on_the_test_faces_and_each_part(tmp_path):
    from facelm.reports.tables import ablation_markdown
    from facelm.teacher.ablation import ablation_rows

    base = {"arch": "resnet18", "epochs": 8, "batch_size": 64, "lr": 0.002, "seed": 0, "loss": "l1"}
    test = {"nme": 3.6, "data": "c", "parts": {"300w/testset": {"nme": 3.7}, "lfpw/testset": {"nme": 3.5}}}
    report = {"nme": 3.8, "fr10": 0.0, "auc10": 0.6, "spearman_conf_error": -0.4, "train_wall_seconds": 60, "data": "v",
              "test": test}
    fc = _finished_run(tmp_path / "fc", base | {"head_type": "fc"}, report)
    integral = _finished_run(tmp_path / "integral", base | {"head_type": "integral"}, report | {"nme": 3.7})
    rows, _ = ablation_rows([fc, integral], ["head_type"])
    assert [r["head_type"] for r in rows] == ["integral", "fc"]
    assert rows[0]["test_parts"] == {"300w/testset": 3.7, "lfpw/testset": 3.5}
    assert "| integral | 3.700 |" in ablation_markdown(rows, "head_type")
    assert "| 3.600 | 300w/testset 3.700, lfpw/testset 3.500 |" in ablation_markdown(rows, "head_type")


def test_a_run_begun_before_per_batch_seeds_says_its_resumed_augmentations_differ(tmp_path, caplog):
    import logging

    from facelm.training import note_seeding_change

    log = logging.getLogger("facelm.test.seeds")
    (tmp_path / "config.json").write_text(json.dumps({"args": {}, "augmentation_seeds": "per batch, from (seed, epoch)"}))
    with caplog.at_level(logging.INFO, logger=log.name):
        note_seeding_change(tmp_path / "last.pt", log)
        assert caplog.messages == []
        (tmp_path / "config.json").write_text(json.dumps({"args": {}}))
        note_seeding_change(tmp_path / "last.pt", log)
    assert len(caplog.messages) == 1 and "began before per-batch augmentation seeds" in caplog.messages[0]


def test_resume_auto_goes_on_with_the_newest_unfinished_run_of_the_name_and_leaves_a_finished_one(tmp_path, capsys):
    import argparse

    from facelm.training import auto_resume

    def args(name: str = "long") -> argparse.Namespace:
        return argparse.Namespace(resume=Path("auto"), name=name, out=tmp_path)

    fresh = args()
    assert auto_resume(fresh) is None and fresh.resume is None  # nothing yet: a new run starts
    for stamp in ("20261201-000000", "20261202-000000"):
        (tmp_path / f"{stamp}-long").mkdir()
        (tmp_path / f"{stamp}-long" / "last.pt").write_bytes(b"")
    (tmp_path / "20261203-000000-very-long").mkdir()  # another name that ends the same way
    unfinished = args()
    assert auto_resume(unfinished) is None and unfinished.resume == tmp_path / "20261202-000000-long" / "last.pt"
    (tmp_path / "20261202-000000-long" / "metrics.json").write_text(json.dumps({"nme": 3.5}))
    assert auto_resume(args()) == {"run_dir": str(tmp_path / "20261202-000000-long"), "nme": 3.5}
    assert facelm(["train-teacher", "--out", str(tmp_path), "--name", "long", "--resume", "auto"]) == 0
    assert "finished already" in capsys.readouterr().out
    explicit = argparse.Namespace(resume=tmp_path / "x" / "last.pt", name="long", out=tmp_path)
    assert auto_resume(explicit) is None and explicit.resume == tmp_path / "x" / "last.pt"


def test_a_resume_with_other_options_or_other_data_is_refused_in_one_line(tmp_path):
    import argparse

    from facelm.training import check_resume

    (tmp_path / "config.json").write_text(json.dumps({"args": {"epochs": 20, "lr": 0.002, "threads": 2, "head": "fc"}}))
    (tmp_path / "data_fingerprint.json").write_text(json.dumps({"sha256": "aaa"}))
    (tmp_path / "teacher_fingerprint.json").write_text(json.dumps({"sha256": "ttt"}))

    def args(**changes) -> argparse.Namespace:
        return argparse.Namespace(**({"resume": tmp_path / "last.pt", "epochs": 20, "lr": 0.002, "threads": 1,
                                      "head_type": "fc"} | changes))

    check_resume(args(), {"sha256": "aaa"}, "ttt")  # threads may change; `head` is recorded under its old name
    check_resume(args(resume=None, epochs=5), {"sha256": "zzz"})  # not a resume
    with pytest.raises(UserError, match=r"--epochs was 20, now 30; .*teacher differs.*; resume with the options in its "
                                        r"config.json, or start a new run"):
        check_resume(args(epochs=30), {"sha256": "aaa"}, "other")
    with pytest.raises(UserError, match="--head-type was 'fc', now 'integral'; the training data differ"):
        check_resume(args(head_type="integral"), {"sha256": "bbb"})


def test_a_run_whose_folder_is_gone_joins_from_its_report_only_on_the_same_schedule(tmp_path):
    """`--earlier REPORT:RUN`: the released run's row from the head-type report beside a new run that differs in
    input size and epochs; a row from a report whose schedule differs in anything else is refused."""
    from facelm.teacher.ablation import ablation_rows

    base = {"arch": "resnet18", "batch_size": 64, "lr": 0.002, "seed": 0, "loss": "l1", "head_type": "integral"}
    report = {"nme": 3.6, "fr10": 0.0, "auc10": 0.6, "spearman_conf_error": -0.4, "train_wall_seconds": 60, "data": "v",
              "test": {"nme": 3.5, "data": "c"}}
    large = _finished_run(tmp_path / "large", base | {"input_size": 160, "epochs": 60}, report)
    old_schedule = {k: v for k, v in base.items() if k != "head_type"} | {"input_size": 112, "epochs": 100}
    old_rows = [{"head_type": "integral", "run": "runs/t/integral", "nme": 3.7, "test_nme": 3.585},
                {"head_type": "fc", "run": "runs/t/fc", "nme": 3.755, "test_nme": 3.64}]
    old = tmp_path / "teacher_head.json"
    old.write_text(json.dumps({"vary": "head_type", "also_varied": [], "schedule": old_schedule, "rows": old_rows}))
    rows, _ = ablation_rows([large], ["input_size", "epochs"], [f"{old}:runs/t/integral"])
    assert [(r["input_size"], r["epochs"], r["nme"]) for r in rows] == [("160", "60", 3.6), ("112", "100", 3.7)]
    assert rows[1]["run"] == "runs/t/integral" and "head_type" not in rows[1]
    with pytest.raises(UserError, match="more than --vary input_size epochs \\(head_type\\)"):
        ablation_rows([large], ["input_size", "epochs"], [f"{old}:runs/t/fc"])
    with pytest.raises(UserError, match="has no row of run 'runs/t/gone'"):
        ablation_rows([large], ["input_size", "epochs"], [f"{old}:runs/t/gone"])

"""The fixed validation split, sources over several folders, and reports on several folders with each part."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facelm.dataset import Source, default_teacher_sources, load_source
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.schemes import get_scheme
from facelm.splits import COMMON_TEST, HAND_TRAIN, in_split, is_validation
from tests.conftest import write_300w_folder


def test_validation_is_a_tenth_of_the_faces_chosen_by_file_name_alone():
    names = [Path(f"/any/root/image_{i:04d}.jpg") for i in range(5000)]
    share = np.mean([is_validation(p) for p in names])
    assert 0.08 < share < 0.12
    assert [is_validation(p) for p in names[:50]] == [is_validation(Path("/other") / p.name) for p in names[:50]]
    assert all(in_split(p, "val") != in_split(p, "train") and in_split(p, "all") for p in names[:200])


def test_a_source_spans_several_folders_and_keeps_one_split(tmp_path):
    (tmp_path / "helen").mkdir(), (tmp_path / "lfpw").mkdir()
    helen, lfpw = write_300w_folder(tmp_path / "helen", 40, seed=0), write_300w_folder(tmp_path / "lfpw", 40, seed=1)
    source = Source.parse(f"300w:68:{helen},{lfpw}")
    assert source.paths == [helen, lfpw]
    everything = load_source(source)
    assert len(everything.samples) == 80
    train = load_source(Source("300w", get_scheme("68"), [helen, lfpw], "train"))
    val = load_source(Source("300w", get_scheme("68"), [helen, lfpw], "val"))
    def names(item) -> set[tuple[str, str]]:
        return {(s.image.parent.name, s.image.name) for s in item.samples}

    assert names(train) | names(val) == names(everything) and not names(train) & names(val)
    assert train.fingerprint()["sha256"] != everything.fingerprint()["sha256"]
    assert train.fingerprint()["split"] == "train"


def test_bad_source_texts_and_splits_are_user_errors(tmp_path):
    for text in ("300w:68:", "300w-68"):
        with pytest.raises(UserError):
            Source.parse(text)
    with pytest.raises(UserError):
        Source("300w", get_scheme("68"), [tmp_path], "holdout")


def test_default_teacher_sources_put_helen_and_lfpw_in_one_head_without_validation_faces(tmp_path):
    for rel in HAND_TRAIN:
        (tmp_path / rel).mkdir(parents=True)
    hand, machine = default_teacher_sources(tmp_path)
    assert hand.name == "300w" and hand.paths == [tmp_path / rel for rel in HAND_TRAIN] and hand.split == "train"
    assert machine.name == "ytf68"
    assert default_teacher_sources(tmp_path, "all")[0].split == "all"


def test_an_eval_set_of_several_folders_reports_each_part(tmp_path):
    folders = []
    for i, rel in enumerate(COMMON_TEST):
        (tmp_path / rel).mkdir(parents=True)
        folders.append(write_300w_folder(tmp_path / rel, 6 + i, seed=i))
    faces = EvalSet(folders, get_scheme("68"))
    assert faces.label == "300w/testset + lfpw/testset" and len(faces.samples) == 13

    def shifted(batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), 68, 3), np.float32)
        out[..., :2] = 0.5
        return out

    report, _, _ = faces.evaluate(shifted, 64)
    assert set(report["parts"]) == {"300w/testset", "lfpw/testset"}
    assert [p["n"] for p in report["parts"].values()] == [6, 7]
    weighted = sum(p["nme"] * p["n"] for p in report["parts"].values()) / 13
    assert weighted == pytest.approx(report["nme"], rel=1e-5)


def test_a_run_reports_validation_in_the_loop_and_the_test_parts_once_and_its_card_says_so(tmp_path):
    from facelm.cli import main as facelm

    parts = []
    for rel in COMMON_TEST:
        (tmp_path / rel).mkdir(parents=True)
        parts.append(str(write_300w_folder(tmp_path / rel, 5)))
    for name in ("train", "val"):
        (tmp_path / name).mkdir()
    train, val = write_300w_folder(tmp_path / "train", 12, seed=3), write_300w_folder(tmp_path / "val", 4, seed=4)
    assert facelm(["train-teacher", "--source", f"300w:68:{train}", "--eval-data", str(val), "--test-data", *parts,
                   "--input-size", "64", "--batch-size", "4", "--max-steps", "1", "--epochs", "1", "--workers", "0",
                   "--precision", "fp32", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["test"]["n"] == 10
    assert set(metrics["test"]["parts"]) == {"300w/testset", "lfpw/testset"}
    assert facelm(["release", "--run", str(run), "--out", str(tmp_path / "w"), "--docs", str(tmp_path / "d")]) == 0
    card = next((tmp_path / "w").glob("*.md")).read_text()
    assert "evaluated once" in card and "`300w/testset` (5)" in card and "`lfpw/testset` (5)" in card


def test_a_run_never_trains_on_its_validation_or_test_faces(tmp_path):
    """A source given by hand may hold the validation faces (or the test faces): the run refuses in one line and says
    how to keep the training split; a :train suffix does, and a release retrained on train + validation may train on
    its in-loop eval faces but never on the test faces."""
    from facelm.training import check_held_out

    folder = tmp_path / "trainset"
    folder.mkdir()
    write_300w_folder(folder, 40, seed=5)
    validation = EvalSet([folder], get_scheme("68"), split="val")
    assert 0 < len(validation.samples) < 40
    everything = load_source(Source.parse(f"300w:68:{folder}"))
    held_out = load_source(Source.parse(f"300w:68:{folder}:train"))
    assert held_out.source.split == "train" and len(held_out.samples) == 40 - len(validation.samples)
    with pytest.raises(UserError, match=r"source 300w: \d+ of its faces are validation .*:train suffix"):
        check_held_out([everything], validation, None)
    check_held_out([held_out], validation, None)
    check_held_out([everything], validation, None, retrain_on_validation=True)
    with pytest.raises(UserError, match="faces are test faces"):
        check_held_out([held_out], None, EvalSet([folder], get_scheme("68")), retrain_on_validation=True)

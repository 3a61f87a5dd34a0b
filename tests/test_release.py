"""The committed releases: teacher and student weights reproduce their model cards on the real test faces (the
README's result tables are checked in test_readme.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facelm.cli import main as facelm
from facelm.paths import RELEASED_STUDENT, RELEASED_TEACHER

ROOT = Path(__file__).resolve().parents[1]
RELEASES = {RELEASED_TEACHER.stem: 25e6, RELEASED_STUDENT.stem: 2e6}  # release -> largest allowed weights file


@pytest.mark.parametrize("name", list(RELEASES))
def test_release_is_small_and_reproduces_its_card(name, data_root, tmp_path):
    release = json.loads((ROOT / "weights" / f"{name}.json").read_text())
    weights = ROOT / "weights" / release["weights"]
    assert weights.stat().st_size <= RELEASES[name]
    reported = release["metrics"].get("test", release["metrics"])  # the test faces, or the only faces older cards name
    folders = [data_root / Path(*Path(label).parts[-2:]) for label in reported["data"].split(" + ")]
    report_path = tmp_path / f"{name}.json"
    assert facelm(["eval", "--model", str(weights), "--data", *map(str, folders), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n"] == reported["n"]
    assert report["nme"] == pytest.approx(reported["nme"], abs=0.02)  # fp16 weights vs the fp32 run
    assert report["fr10"] == pytest.approx(reported["fr10"], abs=100 / reported["n"] + 0.01)  # at most one face flips
    assert report["spearman_conf_error"] < -0.1  # confidence carries information about the error


def test_mirroring_makes_the_released_student_more_accurate_in_pytorch_and_onnx(data_root, tmp_path):
    """`eval --mirror` (each face run as it is and mirrored, averaged) beats the plain student, and the exported ONNX
    model mirrored gives the same answer as PyTorch mirrored."""
    pytest.importorskip("onnxruntime", reason="export toolchain not installed: pip install 'facelm[export]'")
    from conftest import released_export

    plain = json.loads((ROOT / RELEASED_STUDENT.with_suffix(".json")).read_text())["metrics"]["nme"]
    mirrored = {}
    for name, model in (("torch", ROOT / RELEASED_STUDENT), ("onnx", released_export(".onnx"))):
        report_path = tmp_path / f"{name}.json"
        assert facelm(["eval", "--model", str(model), "--data", str(data_root / "300w" / "testset"), "--mirror",
                       "--report", str(report_path)]) == 0
        mirrored[name] = json.loads(report_path.read_text())
    assert mirrored["torch"]["mirror"] and mirrored["torch"]["nme"] < plain - 0.05
    assert mirrored["onnx"]["nme"] == pytest.approx(mirrored["torch"]["nme"], abs=0.005)

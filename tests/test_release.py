"""The committed release: the teacher weights reproduce their model card on the real test faces, and the README's
result tables are exactly what the committed reports say."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facelm.cli import main as facelm
from facelm.readme import render

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "weights" / "teacher_resnet18.json"


def test_readme_results_match_the_committed_reports():
    readme = (ROOT / "README.md").read_text()
    assert render(readme, ROOT) == readme, "README results are stale: run 'make readme'"


def test_released_teacher_is_small_and_reproduces_its_card(data_root, tmp_path):
    release = json.loads(RELEASE.read_text())
    weights = ROOT / "weights" / release["weights"]
    assert weights.stat().st_size <= 25e6
    report_path = tmp_path / "teacher.json"
    assert facelm(["eval", "--model", str(weights), "--data", str(data_root / "300w" / "testset"),
                   "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n"] == 330
    assert report["nme"] == pytest.approx(release["metrics"]["nme"], abs=0.02)  # fp16 weights vs the fp32 run
    assert report["fr10"] == pytest.approx(release["metrics"]["fr10"], abs=0.31)  # at most one face flips
    assert report["spearman_conf_error"] < -0.1  # confidence carries information about the error

"""The README is short and its generated tables, like those of the docs pages, are what the committed reports say;
its Python example runs as written."""
from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from facelm.errors import UserError
from facelm.reports.readme import main as readme_main
from facelm.reports.readme import stale_documents

ROOT = Path(__file__).resolve().parents[1]
README_MAX_CHARS = 15_000
LOADER_BLOCK = "<!-- results:loader -->\nstale\n<!-- /results:loader -->\n"


def test_readme_and_docs_results_match_the_committed_reports():
    assert stale_documents(ROOT) == [], "results are stale: run 'make readme'"


def test_readme_is_short_with_the_quickstart_the_results_and_working_links():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= README_MAX_CHARS
    assert "make all DATA=" in readme and "make test DATA=" in readme
    assert "<!-- results:summary -->" in readme
    links = re.findall(r"\]\(((?:docs/)?[\w/.-]+\.(?:md|png))(?:#[\w-]+)?\)", readme)
    assert {"docs/teacher.md", "docs/student.md", "docs/export.md", "docs/bench.md", "docs/tracking.md",
            "docs/data.md", "docs/conventions.md"} <= set(links)
    assert [link for link in links if not (ROOT / link).is_file()] == []


def _write_repo_with_stale_pages(root: Path) -> list[Path]:
    (root / "docs" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "results" / "loader.json", root / "docs" / "results" / "loader.json")
    pages = [root / "README.md", root / "docs" / "teacher.md"]
    for page in pages:
        page.write_text(f"# {page.stem}\n\n{LOADER_BLOCK}")
    return pages


def test_make_readme_fills_the_docs_pages_as_well_as_the_readme(tmp_path):
    pages = _write_repo_with_stale_pages(tmp_path)
    with pytest.raises(UserError, match="teacher.md"):
        readme_main(argparse.Namespace(root=tmp_path, check=True))
    readme_main(argparse.Namespace(root=tmp_path, check=False))
    for page in pages:
        assert "stale" not in page.read_text() and "augmented img/s" in page.read_text()
    readme_main(argparse.Namespace(root=tmp_path, check=True))


def _largest_face_box(image: np.ndarray) -> np.ndarray:
    import dlib

    rect = max(dlib.get_frontal_face_detector()(image, 1), key=lambda r: r.area())
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float32)


def test_readme_python_example_runs_on_a_photo(tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    from facelm.faces import read_rgb
    from facelm.photos.samples import insightface_group_photo

    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 7
    shutil.copy(insightface_group_photo(), tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "weights", tmp_path / "weights")
    box = _largest_face_box(read_rgb(tmp_path / "photo.jpg"))
    namespace: dict = {"face_box": box}
    exec(code, namespace)
    assert namespace["points"].shape == (1, 68, 2) and namespace["confidence"].shape == (1, 68)
    (x0, y0, x1, y1), points = box, namespace["points"][0]
    assert x0 - 10 < points[:, 0].mean() < x1 + 10 and y0 - 10 < points[:, 1].mean() < y1 + 10
    assert namespace["confidence"].mean() > 0.3  # a face, not background


def test_an_exports_reference_ratio_is_shown_only_for_the_file_and_cpu_the_gate_baseline_measured():
    from facelm.reports.readme import _reference_ratio

    baseline = {"formats": {"tflite_int8": {"file": "m.int8.tflite"}},
                "latency_ratio_by_cpu": {"AMD EPYC": {"tflite_int8": 0.7821}}}
    row = {"format": "tflite_int8", "file": "m.int8.tflite"}
    assert _reference_ratio(row, baseline, "AMD EPYC") == "0.78"
    assert _reference_ratio(row, baseline, "Intel Xeon") == ""
    assert _reference_ratio({**row, "file": "other.int8.tflite"}, baseline, "AMD EPYC") == ""
    assert _reference_ratio({"format": "onnx_fp32", "file": "m.onnx"}, baseline, "AMD EPYC") == ""

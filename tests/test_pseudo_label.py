"""`facelm pseudo-label`: labels in the project's CSV layout with provenance, cached, and one-line errors that
write nothing half-way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelm.annotations import load_annotations
from facelm.schemes import get_scheme

PHOTOS = 6


def _cli(*argv: str, code: str = "") -> subprocess.CompletedProcess:
    script = f"{code}\nimport sys\nfrom facelm.cli import main\nsys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "DATA"})


@pytest.fixture(scope="module")
def photos(data_root: Path, tmp_path_factory) -> Path:
    """A few real LFW photos with their boxes.csv, copied so that a test may break one."""
    source = data_root / "unlabeled" / "lfw"
    rows = (source / "boxes.csv").read_text().splitlines()[: PHOTOS + 1]
    folder = tmp_path_factory.mktemp("photos")
    (folder / "boxes.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:
        name = row.split(",")[0]
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


def test_dlib_labels_are_a_readable_csv_with_provenance_and_are_reused(photos, tmp_path):
    pytest.importorskip("face_recognition_models", reason="pip install 'facelm[peers]'")
    first = _cli("pseudo-label", "--images", str(photos), "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    (csv_path,) = tmp_path.glob("dlib-*/*/landmarks.csv")
    samples = load_annotations(csv_path, get_scheme("68"))
    assert len(samples) == PHOTOS and all(s.image.is_file() for s in samples)
    points = np.stack([s.points for s in samples])
    assert points.min() > -5 and points.max() < 133  # on the 128 px photos
    assert np.abs(points - np.round(points)).max() > 0.05  # sub-pixel: predicted upscaled, mapped back
    provenance = json.loads((csv_path.parent / "provenance.json").read_text())
    assert provenance["upscale"] == 4 and len(provenance["image_sha256"]) == PHOTOS
    assert "non-commercial" in provenance["licence"]
    again = _cli("pseudo-label", "--images", str(photos), "--out", str(tmp_path))
    assert "cached" in again.stdout and len(list(tmp_path.glob("dlib-*"))) == 1


def test_an_unreadable_photo_stops_with_one_line_naming_it_and_writes_nothing(photos, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in photos.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    victim = sorted(broken.glob("*.jpg"))[2]
    victim.write_bytes(victim.read_bytes()[:200])
    proc = _cli("pseudo-label", "--images", str(broken), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and victim.name in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.csv"))


def test_a_labeller_whose_extra_is_missing_says_which_extra_to_install(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    proc = _cli("pseudo-label", "--images", str(folder), "--out", str(tmp_path / "out"),
                code="import sys; sys.modules['face_recognition_models'] = None")
    assert proc.returncode == 2 and "pip install 'facelm[peers]'" in proc.stderr, proc.stderr


def test_a_label_csv_whose_images_are_missing_stops_training_with_one_line(tmp_path):
    header = ["image"] + [f"{a}{i}" for i in range(68) for a in "xy"]
    row = ["gone.jpg"] + ["10.0"] * 136
    (tmp_path / "landmarks.csv").write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    proc = _cli("train-teacher", "--source", f"dlib68:68:{tmp_path}", "--eval-head", "dlib68", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "gone.jpg" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_peer_reports_dlib_under_both_protocols_beside_our_models(data_root, tmp_path):
    pytest.importorskip("face_recognition_models", reason="pip install 'facelm[peers]'")
    from facelm.detect import read_calibration
    from facelm.faces import EvalSet
    from facelm.reports.peer import PROTOCOLS, dlib_under_protocols

    faces = EvalSet([data_root / "300w" / "testset", data_root / "lfpw" / "testset"], get_scheme("68")).take([0, 1, 400])
    reports = dlib_under_protocols(faces, read_calibration(Path("weights/detector_calibration.json"), "hog"))
    assert set(reports) == set(PROTOCOLS)
    for report in reports.values():
        assert report["n"] == 3 and set(report["parts"]) == {"300w/testset", "lfpw/testset"}
        assert 0 < report["nme"] < 20

"""Shared fixtures. Tests that need the real faces take `data_root`: it skips when DATA is unset or missing,
except under CI=true, where a missing data root is a failure."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from facelm.paths import RELEASED_STUDENT

ROOT = Path(__file__).resolve().parents[1]


def released_export(suffix: str) -> Path:
    """A committed export of the released student's first head, e.g. released_export(".onnx")."""
    from facelm.export.run import export_stem

    spec = json.loads((ROOT / RELEASED_STUDENT.with_suffix(".json")).read_text())["spec"]
    return ROOT / "weights" / "export" / f"{export_stem(spec, next(iter(spec['heads'])))}{suffix}"


def _data_root() -> Path | None:
    value = os.environ.get("DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is not None and (root / "300w" / "testset").is_dir():
        return root
    reason = f"real face data not found (DATA={root}); set DATA to the data root, e.g. DATA=../shared/data"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " -- under CI=true the data is required")
    pytest.skip(reason)


def write_pts(path: Path, points) -> None:
    """A 300-W .pts file (1-based coordinates) for 0-based `points`."""
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n")


def write_300w_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """`n` synthetic faces in the 300-W layout: noise images, a jittered 68-point template."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    template = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 30 + 48
    template[36], template[45] = (30, 40), (66, 40)
    for i in range(n):
        image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"face_{i:03d}.jpg"), image)
        write_pts(folder / f"face_{i:03d}.pts", template + rng.normal(0, 1.5, template.shape))
    return folder


@pytest.fixture(scope="session")
def tiny_300w(tmp_path_factory) -> Path:
    return write_300w_folder(tmp_path_factory.mktemp("tiny_300w"), 12)


@pytest.fixture(scope="session")
def tiny_heldout(tmp_path_factory) -> Path:
    """Other synthetic faces for in-loop eval and test: a run never evaluates on the faces it trains on."""
    return write_300w_folder(tmp_path_factory.mktemp("tiny_heldout"), 6, seed=7)


@pytest.fixture(scope="session")
def calib_300w(tmp_path_factory) -> Path:
    """Enough synthetic faces (200) to satisfy the int8 calibration minimum."""
    return write_300w_folder(tmp_path_factory.mktemp("calib_300w"), 200, seed=1)

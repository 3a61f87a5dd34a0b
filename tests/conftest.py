"""Shared fixtures. Tests that need the real faces take `data_root`: it skips when DATA is unset or missing,
except under CI=true, where a missing data root is a failure."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


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

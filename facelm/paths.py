"""Where released weights, committed reports and run folders live, so that every command works from any folder.

In a checkout (or a copied folder, as on a device) they sit beside `facelm/`: `weights/`, `docs/`, `runs/`. An
installed wheel carries the weights inside the package (`facelm/weights/`) and writes runs under the working folder.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
IN_CHECKOUT = (PACKAGE.parent / "weights").is_dir()
ROOT = PACKAGE.parent if IN_CHECKOUT else PACKAGE
WEIGHTS = ROOT / "weights"
RELEASED_TEACHER = WEIGHTS / "teacher_resnet18.pt"
RELEASED_STUDENT = WEIGHTS / "student_mobilenetv2_035.pt"
RELEASED_EXPORTS = WEIGHTS / "export"
RELEASED_CALIBRATION = WEIGHTS / "detector_calibration.json"
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
RUNS = ROOT / "runs" if IN_CHECKOUT else Path("runs")


def shown(path: Path | str) -> str:
    """A path as reports and cards record it: relative to the checkout when inside it (`weights/...`), so committed
    reports never carry one machine's folders."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)

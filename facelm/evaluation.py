"""Evaluate any model (as a batch function) on a folder in any supported layout; write the JSON report and CED."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facelm.annotations import load_annotations
from facelm.dataset import decode_all
from facelm.inference import BatchFn, predict_faces
from facelm.metrics import landmark_report
from facelm.schemes import Scheme


class EvalSet:
    """Annotated faces decoded once, so a training run can evaluate every epoch without re-reading files."""

    def __init__(self, path: Path, scheme: Scheme):
        self.path = Path(path)
        self.scheme = scheme
        self.samples = load_annotations(self.path, scheme)
        self.images = decode_all([s.image for s in self.samples])
        self.gt = np.stack([s.points for s in self.samples])

    def evaluate(self, run_batch: BatchFn, size: int) -> tuple[dict, np.ndarray, np.ndarray]:
        """The report, plus predicted points (N, K, 2) and confidences (N, K)."""
        pred, conf = predict_faces(run_batch, self.images, list(self.gt), size)
        report = landmark_report(pred, self.gt, self.scheme, conf)
        report["data"] = str(self.path)
        report["crop"] = "ground-truth landmark box, eval crop rule"
        return report, pred, conf

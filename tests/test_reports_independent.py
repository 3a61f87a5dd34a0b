"""The committed reports against a recomputation from the released checkpoint that shares none of their evaluation
code: the README tables are rendered from these reports, so a wrong number there would otherwise pass every test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facelm.annotations import load_annotations
from facelm.checkpoint import load_model
from facelm.faces import decode_all
from facelm.inference import eval_crops, to_image
from facelm.models import SingleHead
from facelm.paths import RELEASED_STUDENT, shown
from facelm.schemes import get_scheme

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "results" / "student_vs_teacher_testset.json"  # the released student, PyTorch, no mirroring


def inter_ocular_nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image NME in percent, by hand: mean point error over the distance of the outer eye corners (36, 45)."""
    return np.linalg.norm(pred - gt, axis=2).mean(axis=1) / np.linalg.norm(gt[:, 36] - gt[:, 45], axis=1) * 100


def test_the_released_students_test_nme_is_what_the_committed_report_says(data_root):
    report = json.loads(REPORT.read_text())
    assert report["model"] == shown(RELEASED_STUDENT) and not report["mirror"] and report["n"] == 330
    samples = load_annotations(data_root / "300w" / "testset", get_scheme("68"))
    gt = np.stack([s.points for s in samples])
    model, payload = load_model(ROOT / RELEASED_STUDENT)
    size = payload["spec"]["input_size"]
    crops, matrices = eval_crops(decode_all([s.image for s in samples]), list(gt), size)
    with torch.no_grad():
        outputs = SingleHead(model, report["head"])(torch.from_numpy(crops)).numpy()
    nme = inter_ocular_nme(to_image(outputs, matrices, size)[0], gt)
    np.testing.assert_allclose(nme, report["per_image_nme"], atol=1e-3)
    assert abs(nme.mean() - report["nme"]) < 1e-4

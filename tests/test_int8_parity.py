"""The committed 8-bit exports of the released student against PyTorch on real faces, within each format's tolerance
(facelm/formats.py): the export tests run on noise images, where int8 accuracy means nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, released_export

from facelm.annotations import load_annotations
from facelm.checkpoint import load_model
from facelm.faces import decode_all
from facelm.formats import get_format
from facelm.inference import eval_crops, run_batched, to_image
from facelm.metrics import landmark_report
from facelm.models import SingleHead
from facelm.paths import RELEASED_STUDENT
from facelm.runtimes import load_exported
from facelm.schemes import get_scheme

FACES = 64  # the first faces of 300w/testset, by file name
RUNTIME_MODULES = {"onnx_int8": "onnxruntime", "tflite_int8": "ai_edge_litert", "coreml_w8": "coremltools"}


@pytest.fixture(scope="module")
def faces(data_root) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Crops, their image-to-crop affines, ground truth and the released student's NME in PyTorch."""
    samples = load_annotations(data_root / "300w" / "testset", get_scheme("68"))[:FACES]
    gt = np.stack([s.points for s in samples])
    model, payload = load_model(ROOT / RELEASED_STUDENT)
    size = payload["spec"]["input_size"]
    crops, matrices = eval_crops(decode_all([s.image for s in samples]), list(gt), size)
    with torch.no_grad():
        outputs = SingleHead(model, next(iter(payload["spec"]["heads"])))(torch.from_numpy(crops)).numpy()
    return crops, matrices, gt, nme(outputs, matrices, gt, size)


def nme(outputs: np.ndarray, matrices: list[np.ndarray], gt: np.ndarray, size: int) -> float:
    return landmark_report(to_image(outputs, matrices, size)[0], gt, get_scheme("68"))["nme"]


@pytest.mark.parametrize("name", sorted(RUNTIME_MODULES))
def test_8_bit_export_matches_pytorch_on_real_faces(faces, name):
    pytest.importorskip(RUNTIME_MODULES[name], reason=f"{name} runtime not installed: pip install 'facelm[export]'")
    fmt = get_format(name)
    crops, matrices, gt, torch_nme = faces
    run, meta = load_exported(released_export(fmt.suffix))
    assert meta["format"] == name
    delta = nme(run_batched(run, crops), matrices, gt, meta["model"]["input_size"]) - torch_nme
    assert abs(delta) <= fmt.tolerance, f"{name}: NME {delta:+.3f} points from PyTorch (tolerance {fmt.tolerance})"

"""Runtime-agnostic inference on annotated faces: eval crop, run any batch function, map back to image pixels."""
from __future__ import annotations

from typing import Callable

import numpy as np

from facelm.geometry import crop_to_image, eval_crop_matrix, warp_image
from facelm.preprocess import normalise_crop

BatchFn = Callable[[np.ndarray], np.ndarray]  # (B, 3, S, S) float32 -> (B, K, 3): x, y crop-normalised, logit


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def predict_faces(
    run_batch: BatchFn, images: list[np.ndarray], boxes: list[np.ndarray], size: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (N, K, 2) in image pixels and confidences (N, K) in [0, 1].

    `boxes` are what the crop rule is applied to: ground-truth landmarks (eval) or a mapped detector box.
    """
    points, confidences = [], []
    for start in range(0, len(images), batch_size):
        matrices = [eval_crop_matrix(b, size) for b in boxes[start : start + batch_size]]
        crops = [warp_image(img, m, size) for img, m in zip(images[start : start + batch_size], matrices)]
        out = run_batch(np.stack([normalise_crop(c) for c in crops]))
        for o, m in zip(out, matrices):
            points.append(crop_to_image(o[:, :2], m, size))
            confidences.append(sigmoid(o[:, 2]))
    return np.stack(points), np.stack(confidences)

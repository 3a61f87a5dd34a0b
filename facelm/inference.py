"""Runtime-agnostic inference on annotated faces: eval crop, run any batch function, map back to image pixels."""
from __future__ import annotations

from typing import Callable

import numpy as np

from facelm.geometry import crop_to_image, eval_crop_matrix, warp_image
from facelm.preprocess import normalise_crop

BatchFn = Callable[[np.ndarray], np.ndarray]  # (B, 3, S, S) float32 -> (B, K, 3): x, y crop-normalised, logit


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def eval_crops(images: list[np.ndarray], boxes: list[np.ndarray], size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Normalised model inputs (N, 3, S, S) under the eval crop rule, and each image-to-crop affine.

    `boxes` are what the crop rule is applied to: ground-truth landmarks (eval) or a mapped detector box.
    """
    matrices = [eval_crop_matrix(b, size) for b in boxes]
    return normalised_crops(images, matrices, size), matrices


def normalised_crops(images: list[np.ndarray], matrices: list[np.ndarray], size: int) -> np.ndarray:
    """Model inputs (N, 3, S, S): each image cut by its image-to-crop affine, then normalised."""
    return np.stack([normalise_crop(warp_image(img, m, size)) for img, m in zip(images, matrices)])


def flip_averaged(run_batch: BatchFn, flip_perm: tuple[int, ...]) -> BatchFn:
    """Test-time mirroring: the mean of the raw outputs on a crop and on its mirror image, renumbered by the
    scheme's flip permutation (u -> 1 - u across the crop). Twice the compute for steadier, more accurate points: the
    teacher's distillation targets, and `--mirror` on any model at inference."""
    perm = list(flip_perm)

    def run(batch: np.ndarray) -> np.ndarray:
        mirrored = run_batch(np.ascontiguousarray(batch[..., ::-1]))[:, perm]
        mirrored[..., 0] = 1.0 - mirrored[..., 0]
        return (run_batch(batch) + mirrored) / 2

    return run


def run_batched(run_batch: BatchFn, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([run_batch(crops[i: i + batch_size]) for i in range(0, len(crops), batch_size)])


def to_image(outputs: np.ndarray, matrices: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (N, K, 2) in image pixels and confidences (N, K) in [0, 1] from raw (N, K, 3) outputs."""
    points = np.stack([crop_to_image(o[:, :2], m, size) for o, m in zip(outputs, matrices)])
    return points, sigmoid(outputs[..., 2])


def predict_faces(
    run_batch: BatchFn, images: list[np.ndarray], boxes: list[np.ndarray], size: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    crops, matrices = eval_crops(images, boxes, size)
    return to_image(run_batched(run_batch, crops, batch_size), matrices, size)

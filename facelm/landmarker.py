"""A landmark model ready for photos and video: any checkpoint or exported model, run on crops given as affines.

    landmarker = load_landmarker(Path("weights/student_mobilenetv2_035.pt"))   # or .onnx, .tflite, .ncnn.param ...
    points, confidence = landmarker.from_boxes(image, [landmark_box])          # eval crop rule
    points, confidence = landmarker.from_crops(image, [matrix])                # any crop, e.g. rotated (tracking)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm.contract import read_sidecar
from facelm.detect import BoxCalibration
from facelm.geometry import crop_matrix, eval_crop_matrix, landmark_box
from facelm.inference import BatchFn, flip_averaged, normalised_crops, to_image
from facelm.paths import RELEASED_CALIBRATION, shown
from facelm.runs import file_sha256
from facelm.schemes import Scheme, get_scheme


@dataclass
class Landmarker:
    run_batch: BatchFn
    head: str
    scheme: Scheme
    size: int
    runtime: str
    path: Path
    checkpoint_sha256: str  # of the .pt, or the one an export was made from (its sidecar): what per-model fits key on

    def from_crops(self, image: np.ndarray, matrices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, K, 2) in image pixels and confidences (N, K) in [0, 1], one face per image-to-crop affine."""
        if not matrices:
            return np.zeros((0, self.scheme.n_points, 2), np.float32), np.zeros((0, self.scheme.n_points), np.float32)
        crops = normalised_crops([image] * len(matrices), matrices, self.size)
        return to_image(self.run_batch(crops), matrices, self.size)

    def from_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The same under the eval crop rule, from landmark boxes (or landmarks, or a calibrated detector box)."""
        return self.from_crops(image, [eval_crop_matrix(b, self.size) for b in boxes])

    def from_detection(self, image: np.ndarray, box: np.ndarray, calibration: BoxCalibration, refine: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """One face's points (K, 2) and confidences (K,) from a detector box: the calibrated crop, then re-cropped
        `refine` times on its own landmarks."""
        points, confidence = self.from_boxes(image, [calibration.landmark_box(box)])
        for _ in range(refine):
            points, confidence = self.from_boxes(image, [points[0]])
        return points[0], confidence[0]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --head and --calibration: the options of every command that runs a model on photos or video."""
    from facelm.paths import RELEASED_STUDENT

    p.add_argument("--model", type=Path, default=RELEASED_STUDENT,
                   help=f"checkpoint or exported model with its sidecar (default: {shown(RELEASED_STUDENT)})")
    p.add_argument("--head", default=None, help="head of a multi-head checkpoint (default: its first)")
    p.add_argument("--mirror", action="store_true",
                   help="average each crop's points with its mirror image's (two model runs per face)")
    p.add_argument("--calibration", type=Path, default=RELEASED_CALIBRATION,
                   help=f"detector-box-to-crop mapping (default: {shown(RELEASED_CALIBRATION)})")


def load_landmarker(path: Path, head: str | None = None, mirror: bool = False) -> Landmarker:
    """Any checkpoint or exported model; with `mirror`, every crop is run as it is and mirrored, and averaged."""
    from facelm.engine import model_batch_fn

    run, head, scheme_name, size, runtime = model_batch_fn(Path(path), head)
    scheme = get_scheme(scheme_name)
    if mirror:
        run = flip_averaged(run, scheme.flip_perm)
        runtime += ", mirrored"
    return Landmarker(run, head, scheme, size, runtime, Path(path), checkpoint_sha256(Path(path)))


def checkpoint_sha256(path: Path) -> str:
    """The sha256 of a checkpoint, or of the checkpoint an exported model was made from."""
    return file_sha256(path) if path.suffix == ".pt" else read_sidecar(path, check_hash=False)["model"]["checkpoint_sha256"]


def upright_crop(points: np.ndarray, scheme: Scheme, size: int, scale: float) -> np.ndarray:
    """The crop that follows a face from its landmarks, as MediaPipe's tracker does: centred on the landmark box, its
    side `scale` times the box side, rotated so that the outer eye corners lie level."""
    a, b = scheme.eye_corners
    dx, dy = points[b] - points[a]
    angle = float(np.degrees(np.arctan2(dy, dx)))
    cx, cy, side = landmark_box(rotate_points(points, -angle, points.mean(axis=0)))
    centre = rotate_points(np.array([[cx, cy]]), angle, points.mean(axis=0))[0]
    return crop_matrix((float(centre[0]), float(centre[1])), side * scale, size, rotation_deg=angle)


def rotate_points(points: np.ndarray, angle_deg: float, about: np.ndarray) -> np.ndarray:
    a = np.radians(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - about) @ rotation.T + about

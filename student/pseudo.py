"""Crop geometry for unlabelled photos: a starting box, then the teacher's own landmarks, re-cropped until settled.

The points found here only place the crop (as ground truth does for labelled faces); the training targets come
from the teacher run online on each augmented crop. Results are cached per (teacher file, image list), which is
exact: the same teacher on the same images gives the same points.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm.annotations import IMAGE_SUFFIXES, Sample
from facelm.dataset import decode_all
from facelm.errors import UserError
from facelm.geometry import landmark_box
from facelm.inference import BatchFn, predict_faces

BOX_COLUMNS = ["image", "x0", "y0", "x1", "y1"]


@dataclass
class UnlabelledFolder:
    path: Path
    images: list[Path]
    boxes: np.ndarray | None  # (N, 4) detector boxes x0, y0, x1, y1, or None: use the frame prior


def read_unlabelled(folder: Path) -> UnlabelledFolder:
    """Images of a folder, with detector boxes from its `boxes.csv` (image, x0, y0, x1, y1) when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: unlabelled folder not found; set DATA or pass --unlabelled PATH")
    box_file = folder / "boxes.csv"
    if box_file.exists():
        with box_file.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows or rows[0] != BOX_COLUMNS:
            raise UserError(f"{box_file}:1: header must be {','.join(BOX_COLUMNS)}")
        try:
            boxes = np.asarray([[float(v) for v in row[1:5]] for row in rows[1:] if row], dtype=np.float32)
        except (ValueError, IndexError):
            raise UserError(f"{box_file}: every row needs an image name and four numbers") from None
        return UnlabelledFolder(folder, [folder / row[0] for row in rows[1:] if row], boxes.reshape(-1, 4))
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"{folder}: no images")
    return UnlabelledFolder(folder, images, None)


def frame_prior(samples: list[Sample], images: list[np.ndarray]) -> np.ndarray:
    """Median landmark box of a labelled source relative to its frames: centre x / width, centre y / height,
    side / min(width, height). It places the first crop on frames of the same kind that have no detector box."""
    rows = []
    for sample, image in zip(samples, images):
        h, w = image.shape[:2]
        cx, cy, side = landmark_box(sample.points)
        rows.append((cx / w, cy / h, side / min(h, w)))
    return np.median(np.asarray(rows), axis=0)


def starting_boxes(folder: UnlabelledFolder, images: list[np.ndarray], prior: np.ndarray | None) -> list[np.ndarray]:
    """Two-corner boxes (2, 2) to apply the crop rule to before the teacher has looked."""
    if folder.boxes is not None:
        return [box.reshape(2, 2) for box in folder.boxes]
    if prior is None:
        raise UserError(f"{folder.path}: no boxes.csv and no --prior-source to place the first crop")
    boxes = []
    for image in images:
        h, w = image.shape[:2]
        cx, cy, half = prior[0] * w, prior[1] * h, prior[2] * min(h, w) / 2
        boxes.append(np.array([[cx - half, cy - half], [cx + half, cy + half]], np.float32))
    return boxes


def teacher_points(run_teacher: BatchFn, images: list[np.ndarray], boxes: list[np.ndarray], size: int,
                   passes: int = 3) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Landmarks (N, K, 2), confidences (N, K) and, per pass, the median box-centre move as a fraction of the box."""
    moves, current = [], boxes
    for _ in range(passes):
        points, confidence = predict_faces(run_teacher, images, current, size)
        before = np.array([landmark_box(b.reshape(-1, 2)) for b in current])
        after = np.array([landmark_box(p) for p in points])
        moves.append(float(np.median(np.linalg.norm(after[:, :2] - before[:, :2], axis=1) / np.maximum(after[:, 2], 1.0))))
        current = list(points)
    return points, confidence, moves


def cache_key(teacher_sha: str, folder: UnlabelledFolder) -> str:
    digest = hashlib.sha256(teacher_sha.encode())
    for path in folder.images:
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:16]


def pseudo_sample_points(folder: UnlabelledFolder, run_teacher: BatchFn, size: int, teacher_sha: str,
                         prior: np.ndarray | None, cache_dir: Path) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Decoded images and the teacher's landmarks for one folder, cached in `cache_dir`; plus a summary."""
    images = decode_all(folder.images)
    cache = Path(cache_dir) / f"pseudo-{folder.path.name}-{cache_key(teacher_sha, folder)}.npz"
    if cache.exists():
        stored = np.load(cache)
        points, confidence, moves = stored["points"], stored["confidence"], stored["moves"].tolist()
    else:
        points, confidence, moves = teacher_points(run_teacher, images, starting_boxes(folder, images, prior), size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, points=points, confidence=confidence, moves=np.asarray(moves))
    summary = {"path": str(folder.path), "n_images": len(images), "cache": str(cache),
               "box_centre_move_per_pass": moves, "mean_teacher_confidence": float(confidence.mean())}
    return images, points, summary

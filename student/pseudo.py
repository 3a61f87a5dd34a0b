"""Teacher targets on the canonical view, cached: labelled faces cropped by their ground truth, unlabelled photos
by a starting box and then the teacher's own landmarks, re-cropped until settled.

The teacher sees each face once, un-augmented, under the eval crop rule: the view it is most accurate on. Training
moves its points with the same affine as the student's augmented crop (facelm.dataset.LandmarkCrops), which is
exact geometry, so the outputs can be cached, keyed by everything they depend on: the teacher's file, head and TTA,
the images' contents, the boxes, the starting prior, the detector-box calibration and the number of passes. For
unlabelled photos the teacher's points also place the crop, as ground truth does for labelled faces.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facelm.annotations import IMAGE_SUFFIXES, Sample
from facelm.dataset import LoadedSource
from facelm.detect import BoxCalibration
from facelm.errors import UserError
from facelm.faces import decode_all
from facelm.geometry import landmark_box
from facelm.inference import BatchFn, sigmoid
from facelm.labellers import canonical_outputs, mapped_boxes, settled_outputs

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


def starting_boxes(folder: UnlabelledFolder, images: list[np.ndarray], prior: np.ndarray | None,
                   calibration: BoxCalibration | None) -> list[np.ndarray]:
    """Two-corner landmark boxes (2, 2) to apply the crop rule to before the teacher has looked: a folder's detector
    boxes mapped by the detector's fitted calibration, else the frame prior."""
    if folder.boxes is not None:
        return mapped_boxes(folder.boxes, calibration)
    if prior is None:
        raise UserError(f"{folder.path}: no boxes.csv and no --prior-source to place the first crop")
    boxes = []
    for image in images:
        h, w = image.shape[:2]
        cx, cy, half = prior[0] * w, prior[1] * h, prior[2] * min(h, w) / 2
        boxes.append(np.array([[cx - half, cy - half], [cx + half, cy + half]], np.float32))
    return boxes


def file_digest(path: Path) -> bytes:
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError:
        raise UserError(f"{path}: cannot read image file (missing or unreadable)") from None


def cache_key(teacher_key: str, images: list[Path], boxes: list[np.ndarray] | None = None, settings: dict | None = None) -> str:
    """A digest of everything the cached outputs depend on: the teacher key, each image's name and contents, the boxes
    and any other `settings` (the starting prior, the box calibration, the pass count)."""
    digest = hashlib.sha256(teacher_key.encode())
    digest.update(json.dumps(settings or {}, sort_keys=True).encode())
    for path in images:
        digest.update(path.name.encode())
        digest.update(file_digest(path))
    for box in boxes or []:
        digest.update(np.ascontiguousarray(box, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def pseudo_sample_points(folder: UnlabelledFolder, run_teacher: BatchFn, size: int, teacher_key: str,
                         prior: np.ndarray | None, cache_dir: Path, calibration: BoxCalibration | None,
                         passes: int = 3) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Decoded images and the teacher's outputs (N, K, 3) for one unlabelled folder, cached; plus a summary."""
    images = decode_all(folder.images)
    settings = {"size": size, "passes": passes, "calibration": asdict(calibration) if folder.boxes is not None else None,
                "prior": None if folder.boxes is not None or prior is None else [float(v) for v in prior]}
    boxes = None if folder.boxes is None else list(folder.boxes)
    cache = Path(cache_dir) / f"pseudo-{folder.path.name}-{cache_key(teacher_key, folder.images, boxes, settings)}.npz"
    if cache.exists():
        stored = np.load(cache)
        outputs, moves = stored["outputs"], stored["moves"].tolist()
    else:
        outputs, moves = settled_outputs(run_teacher, images, starting_boxes(folder, images, prior, calibration), size,
                                         passes)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, outputs=outputs, moves=np.asarray(moves))
    summary = {"path": str(folder.path), "n_images": len(images), "cache": str(cache), "start": settings,
               "box_centre_move_per_pass": moves, "mean_teacher_confidence": float(sigmoid(outputs[..., 2]).mean())}
    return images, outputs, summary


def labelled_outputs(loaded: LoadedSource, run_teacher: BatchFn, size: int, teacher_key: str, cache_dir: Path) -> np.ndarray:
    """Teacher outputs (N, K, 3) on the eval-rule crop of each labelled face's ground-truth box, cached."""
    paths = [s.image for s in loaded.samples]
    boxes = [s.points for s in loaded.samples]
    key = cache_key(teacher_key, paths, boxes, {"size": size})
    cache = Path(cache_dir) / f"labelled-{loaded.source.name}-{key}.npz"
    if cache.exists():
        return np.load(cache)["outputs"]
    outputs = canonical_outputs(run_teacher, loaded.images, boxes, size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, outputs=outputs)
    return outputs

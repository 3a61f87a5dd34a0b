"""Annotated faces, decoded once: image reading that refuses truncated files, the faces of a split, and the
evaluation set that scores any model's batch function on them, on all its folders and on each. numpy and opencv, no
torch: the on-device bench (bench/) evaluates with it too."""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facelm.annotations import Sample, load_annotations
from facelm.errors import UserError
from facelm.inference import BatchFn, predict_faces
from facelm.metrics import landmark_report, parts_report
from facelm.runs import data_label
from facelm.schemes import Scheme
from facelm.splits import in_split


def load_samples(paths: list[Path], scheme: Scheme, split: str = "all") -> list[Sample]:
    """Every face of the folders (or annotation files), in order, that belongs to `split`."""
    samples = [s for path in paths for s in load_annotations(path, scheme) if in_split(s.image, split)]
    if not samples:
        raise UserError(f"{', '.join(str(p) for p in paths)}: no faces in the {split} split")
    return samples


def _looks_truncated(path: Path, data: bytes) -> bool:
    """libjpeg decodes a cut-off JPEG into grey without an error, so check the end-of-image marker ourselves."""
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9")
    if suffix == ".png":
        return b"IEND" not in data[-64:]
    return False


def read_rgb(path: Path) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise UserError(f"{path}: cannot read image file (missing or unreadable)") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or _looks_truncated(Path(path), data):
        raise UserError(f"{path}: cannot read image (truncated or not an image); re-copy the file or remove it and its label")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_all(paths: list[Path], threads: int = 4) -> list[np.ndarray]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(read_rgb, paths))


class EvalSet:
    """Annotated faces decoded once, so a training run can evaluate every epoch without re-reading files. It may span
    several folders (the 300-W common test set is HELEN's and LFPW's); reports then give each part too."""

    def __init__(self, paths: Path | list[Path], scheme: Scheme, split: str = "all"):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        self.scheme = scheme
        self.split = split
        per_path = [load_samples([path], scheme, split) for path in self.paths]
        self.samples = [s for samples in per_path for s in samples]
        self.part = np.concatenate([np.full(len(samples), i) for i, samples in enumerate(per_path)])
        self.images = decode_all([s.image for s in self.samples])
        self.gt = np.stack([s.points for s in self.samples])

    @property
    def label(self) -> str:
        """The folders as cards and tables show them ('300w/testset + lfpw/testset'), with the split if not all."""
        names = " + ".join(data_label(p) for p in self.paths)
        return names if self.split == "all" else f"{names} [{self.split} split]"

    def take(self, indices: list[int]) -> EvalSet:
        """The same set restricted to some of its faces."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.images = [self.images[i] for i in indices]
        part.gt = self.gt[indices]
        part.part = self.part[indices]
        return part

    def parts_report(self, pred: np.ndarray, conf: np.ndarray | None) -> dict[str, dict]:
        """NME, FR@10 and AUC@10 on each folder's faces."""
        return parts_report(pred, self.gt, self.scheme, self.part, [data_label(p) for p in self.paths], conf)

    def scored(self, pred: np.ndarray, conf: np.ndarray | None = None) -> dict:
        """The report of predicted points (N, K, 2) on these faces; on each folder too when there are several."""
        report = landmark_report(pred, self.gt, self.scheme, conf)
        if len(self.paths) > 1:
            report["parts"] = self.parts_report(pred, conf)
        return report

    def evaluate(self, run_batch: BatchFn, size: int, batch_size: int = 64) -> tuple[dict, np.ndarray, np.ndarray]:
        """The report, plus predicted points (N, K, 2) and confidences (N, K)."""
        pred, conf = predict_faces(run_batch, self.images, list(self.gt), size, batch_size)
        report = self.scored(pred, conf)
        report["data"] = self.label
        report["crop"] = "ground-truth landmark box, eval crop rule"
        return report, pred, conf

"""Annotation sources, in-memory decoding, fingerprints and the torch Dataset of augmented crops."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from facelm.annotations import Sample
from facelm.augment import GeometryConfig, apply_geometry, photometric_pipeline, random_crop_matrix
from facelm.errors import UserError
from facelm.faces import decode_all, load_samples
from facelm.geometry import crop_to_normalised, eval_crop_matrix, transform_points, warp_image
from facelm.preprocess import normalise_crop
from facelm.schemes import Scheme, get_scheme
from facelm.splits import HAND_TRAIN, SPLITS, hand_train_paths

_CV2_DEFAULT_THREADS = cv2.getNumThreads()


@dataclass
class Source:
    """One annotation source: it trains (and is evaluated on) the head of the same name. It may span several folders
    of one annotation (HELEN and LFPW under 300-W's), and keep only one split of them (`facelm/splits.py`)."""

    name: str
    scheme: Scheme
    paths: list[Path]
    split: str = "all"

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in ([self.paths] if isinstance(self.paths, (str, Path)) else self.paths)]
        if self.split not in SPLITS:
            raise UserError(f"source {self.name}: split {self.split!r} is not one of {', '.join(SPLITS)}")

    @classmethod
    def parse(cls, text: str) -> "Source":
        """`name:scheme:path[,path...][:split]`, e.g. `300w:68:/data/300w/trainset,/data/lfpw/trainset:train` (the
        training split: the validation faces held out); without a split, every face of the folders."""
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise UserError(f"source {text!r}: expected NAME:SCHEME:PATH[,PATH...][:SPLIT], e.g. "
                            "300w:68:$DATA/300w/trainset:train")
        paths, split = parts[2], "all"
        if paths.rpartition(":")[2] in SPLITS:
            paths, _, split = paths.rpartition(":")
        return cls(parts[0], get_scheme(parts[1]), [Path(p) for p in paths.split(",")], split)

    def spec(self) -> str:
        split = "" if self.split == "all" else f" [{self.split} split]"
        return f"{self.name}:{self.scheme.name}:{','.join(str(p) for p in self.paths)}{split}"


def default_teacher_sources(data_root: Path, split: str = "train") -> list[Source]:
    """The real 68-point sources as separate heads: the hand labels (HELEN + LFPW training faces, one annotation, the
    validation faces held out unless `split` says otherwise) and the machine-made ytf68 labels."""
    return [
        Source("300w", get_scheme("68"), hand_train_paths(data_root) or [data_root / HAND_TRAIN[0]], split),
        Source("ytf68", get_scheme("68"), [data_root / "ytf68" / "train"]),
    ]


def in_frame_weights(points: np.ndarray, image: np.ndarray) -> np.ndarray:
    """1 for points inside the image, 0 for points a labeller put outside it (they cannot be checked)."""
    h, w = image.shape[:2]
    inside = (points[:, 0] >= -0.5) & (points[:, 0] <= w - 0.5) & (points[:, 1] >= -0.5) & (points[:, 1] <= h - 0.5)
    return inside.astype(np.float32)


def fingerprint_samples(samples: list[Sample], roots: list[Path]) -> str:
    """sha256 over each face's path (relative to its source folder, so any data root gives the same), file size and
    label."""
    digest = hashlib.sha256()
    folders = [r.parent if r.is_file() else r for r in roots]
    for sample in samples:
        root = next((r for r in folders if sample.image.is_relative_to(r)), None)
        rel = sample.image.relative_to(root) if root is not None else sample.image
        digest.update(str(rel).encode())
        digest.update(str(sample.image.stat().st_size).encode())
        digest.update(np.ascontiguousarray(sample.points, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass
class LoadedSource:
    source: Source
    samples: list[Sample]
    images: list[np.ndarray]
    weights: list[np.ndarray]
    teacher: np.ndarray | None = None  # (N, K, 3): a teacher's x, y in image pixels and confidence logit

    def mean_crop_shape(self, size: int) -> np.ndarray:
        """Mean crop-normalised shape under the eval crop rule: where a new head starts."""
        return np.mean([crop_to_normalised(transform_points(s.points, eval_crop_matrix(s.points, size)), size)
                        for s in self.samples], axis=0).astype(np.float32)

    def fingerprint(self) -> dict:
        return {
            "spec": self.source.spec(),
            "n_images": len(self.samples),
            "n_points_masked_out_of_frame": int(sum((w == 0).sum() for w in self.weights)),
            "split": self.source.split,
            "sha256": fingerprint_samples(self.samples, self.source.paths),
        }


def load_source(source: Source) -> LoadedSource:
    samples = load_samples(source.paths, source.scheme, source.split)
    images = decode_all([s.image for s in samples])
    weights = [in_frame_weights(s.points, img) for s, img in zip(samples, images)]
    return LoadedSource(source, samples, images, weights)


def data_fingerprint(loaded: list[LoadedSource]) -> dict:
    parts = {item.source.name: item.fingerprint() for item in loaded}
    overall = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"sources": parts, "sha256": overall}


class LandmarkCrops(Dataset):
    """Square crops around the landmarks, augmented in training; every source feeds the head of its index.

    Items carry `image` (3, S, S), `target` (K_max, 2) crop-normalised, `weight` (K_max,) and `head` (int).
    Heads with fewer points than K_max are padded with zero weight, so one batch may mix schemes.
    When every source carries teacher outputs, items also carry `teacher` (K_max, 3): the teacher's points moved
    by exactly the same crop, rotation and mirroring as the image (crop-normalised), and its confidence logit.
    """

    def __init__(
        self,
        sources: list[LoadedSource],
        size: int,
        train: bool,
        geometry: GeometryConfig | None = None,
        photometric_strength: float = 1.0,
    ):
        self.size = size
        self.train = train
        self.geometry = geometry or GeometryConfig()
        self.photometric = photometric_pipeline(photometric_strength) if train else None
        self.k_max = max(item.source.scheme.n_points for item in sources)
        self.flip_perms = [item.source.scheme.flip_perm for item in sources]
        self.with_teacher = all(item.teacher is not None for item in sources)
        self.entries = [
            (image, sample.points, weight, head, item.teacher[i] if self.with_teacher else None)
            for head, item in enumerate(sources)
            for i, (sample, image, weight) in enumerate(zip(item.samples, item.images, item.weights))
        ]
        self._rng = np.random.default_rng()

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        if self.photometric is not None:
            self.photometric.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitems__(self, batch: list[int]) -> list[dict]:
        """A batch's items (the DataLoader's fetch); a SeededBatch first reseeds the augmentations from its seed."""
        if isinstance(batch, SeededBatch):
            self.reseed(batch.seed)
        return [self[index] for index in batch]

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, bool]:
        """Geometry only: uint8 RGB crop, crop-pixel points, weights, head, the image->crop affine and mirroring."""
        image, points, weight, head, _ = self.entries[index]
        flip = False
        if self.train:
            matrix, flip = random_crop_matrix(points, self.size, self.geometry, self._rng)
            crop, moved = apply_geometry(image, points, matrix, flip, self.flip_perms[head], self.size)
            if flip:
                weight = weight[list(self.flip_perms[head])]
        else:
            matrix = eval_crop_matrix(points, self.size)
            crop = warp_image(image, matrix, self.size)
            moved = transform_points(points, matrix)
        return crop, moved, weight, head, matrix, flip

    def teacher_target(self, index: int, matrix: np.ndarray, flip: bool) -> np.ndarray:
        """The teacher's outputs under the item's own crop: points through the same affine, renumbered if mirrored."""
        teacher, head = self.entries[index][4], self.entries[index][3]
        order = list(self.flip_perms[head]) if flip else slice(None)
        out = np.zeros((self.k_max, 3), np.float32)
        out[: len(teacher), :2] = crop_to_normalised(transform_points(teacher[:, :2], matrix), self.size)[order]
        out[: len(teacher), 2] = teacher[order, 2]
        return out

    def __getitem__(self, index: int) -> dict:
        crop, points, weight, head, matrix, flip = self.crop(index)
        target = np.zeros((self.k_max, 2), np.float32)
        mask = np.zeros(self.k_max, np.float32)
        target[: len(points)] = crop_to_normalised(points, self.size)
        mask[: len(points)] = weight
        item = {"target": torch.from_numpy(target), "weight": torch.from_numpy(mask), "head": head}
        if self.with_teacher:
            item["teacher"] = torch.from_numpy(self.teacher_target(index, matrix, flip))
        if self.photometric is not None:
            crop = self.photometric(image=crop)["image"]
        item["image"] = torch.from_numpy(normalise_crop(crop))
        return item


def set_loader_threads(workers: int) -> None:
    """OpenCV on one thread when loader workers do the augmenting, its default otherwise.

    Call it before the loader starts its workers: they inherit it when they fork. OpenCV's default is one thread per
    core in every worker, which oversubscribes the CPU (measured on 2 cores with 2 workers: 16 threads each cost
    half the crops/s). Setting it inside a worker instead can hang once the parent has used OpenCV's thread pool."""
    cv2.setNumThreads(1 if workers else _CV2_DEFAULT_THREADS)


AUGMENTATION_SEEDS = "per batch, from (seed, epoch)"  # SeededBatches; run configs record it as augmentation_seeds


class SeededBatch(list):
    """A batch of dataset indices with the seed its augmentations draw from."""

    def __init__(self, indices: list[int], seed: int):
        super().__init__(indices)
        self.seed = seed


class SeededBatches(Sampler[SeededBatch]):
    """The batches of a batch sampler, each with an augmentation seed drawn from (seed, epoch): an epoch's crops
    depend on nothing else, neither on the loader's worker count nor on the epochs before it. So a resumed run
    replays only the index draws (`facelm.engine.skip_trained_draws`, cheap) and goes on exactly as an uninterrupted
    run would, and two runs on one seed (the A/B arms) see the same crops of the faces they share."""

    def __init__(self, batches: Sampler[list[int]], seed: int):
        self.batches, self.seed, self.epoch = batches, seed, 0

    def __iter__(self):
        seeds = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for batch in self.batches:
            yield SeededBatch(batch, int(seeds.integers(2**63)))

    def __len__(self) -> int:
        return len(self.batches)

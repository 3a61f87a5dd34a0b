"""The fixed splits of the hand-labelled 68-point faces: training, validation and the 300-W common test set.

Validation is carved from the training folders by a hash of each image's file name, so the same faces are held out
on every machine and in every copy of the data, whatever order the files are listed in. Every choice (in-loop eval,
ablation ranking, A/B arms, tuned thresholds) is made on it; the test faces are evaluated once per finished run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

HAND_TRAIN = ("300w/trainset", "lfpw/trainset")  # HELEN and LFPW training faces: one annotation source, head `300w`
COMMON_TEST = ("300w/testset", "lfpw/testset")  # the 554 faces of the 300-W common subset
VALIDATION_PERCENT = 10
SPLITS = ("all", "train", "val")


def is_validation(image: Path) -> bool:
    """True for the ~10% of faces held out for validation: the first 8 hex digits of sha256(file name), mod 100."""
    return int(hashlib.sha256(Path(image).name.encode()).hexdigest()[:8], 16) % 100 < VALIDATION_PERCENT


def in_split(image: Path, split: str) -> bool:
    """Whether a face of a training folder belongs to `split`: all, train (validation held out) or val."""
    if split == "all":
        return True
    return is_validation(image) == (split == "val")


def hand_train_paths(data_root: Path) -> list[Path]:
    """The hand-labelled training folders under a data root that exist (LFPW is optional for older copies)."""
    return [Path(data_root) / rel for rel in HAND_TRAIN if (Path(data_root) / rel).is_dir()]


def common_test_paths(data_root: Path) -> list[Path]:
    """The 300-W common test folders under a data root that exist."""
    return [Path(data_root) / rel for rel in COMMON_TEST if (Path(data_root) / rel).is_dir()]

"""Model input contract: RGB uint8 crop, HWC -> float32 CHW, (pixel - MEAN) / STD. numpy only (bench/ uses it)."""
from __future__ import annotations

import numpy as np

INPUT_MEAN = (123.675, 116.28, 103.53)
INPUT_STD = (58.395, 57.12, 57.375)


def normalise_crop(crop_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised input."""
    x = (crop_rgb.astype(np.float32) - np.asarray(INPUT_MEAN, np.float32)) / np.asarray(INPUT_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))

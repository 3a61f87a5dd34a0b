"""Training augmentation: random geometry (one affine warp) and a photometric pipeline (albumentations)."""
from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np

from facelm.errors import UserError
from facelm.geometry import crop_matrix, landmark_box, transform_points, warp_image

PHOTOMETRIC_RULE = 2  # recorded in run configs: 2 = `photometric_pipeline` scales every transform, 0 disables


@dataclass
class GeometryConfig:
    scale_min: float = 1.0
    scale_max: float = 1.5
    jitter: float = 0.15  # max centre shift, as a fraction of the landmark box side
    rotation: float = 20.0  # degrees, uniform in [-rotation, rotation]
    flip_prob: float = 0.5


def random_crop_matrix(points: np.ndarray, size: int, cfg: GeometryConfig, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """A random square crop around the landmarks; returns the affine and whether it mirrors."""
    cx, cy, side = landmark_box(points)
    shift = rng.uniform(-cfg.jitter, cfg.jitter, size=2) * side
    scale = rng.uniform(cfg.scale_min, cfg.scale_max)
    rotation = rng.uniform(-cfg.rotation, cfg.rotation)
    flip = bool(rng.random() < cfg.flip_prob)
    return crop_matrix((cx + shift[0], cy + shift[1]), side * scale, size, rotation, flip), flip


def apply_geometry(
    image: np.ndarray, points: np.ndarray, matrix: np.ndarray, flip: bool, flip_perm: tuple[int, ...], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Warp image and points with one affine; a mirrored crop renumbers points by the scheme's flip permutation."""
    crop = warp_image(image, matrix, size)
    moved = transform_points(points, matrix)
    if flip:
        moved = moved[list(flip_perm)]
    return crop, moved


class LightCast(A.ImageOnlyTransform):
    """Tint the whole image with a light colour that daylight never has: UV-violet, deep blue, fluorescent green."""

    CASTS = {
        "uv_violet": (0.85, 0.35, 1.0),
        "blue": (0.45, 0.7, 1.0),
        "fluorescent_green": (0.6, 1.0, 0.55),
    }

    def __init__(self, strength: tuple[float, float] = (0.3, 0.8), p: float = 0.5):
        super().__init__(p=p)
        self.strength = strength

    def get_params(self) -> dict:
        name = list(self.CASTS)[self.py_random.randrange(len(self.CASTS))]
        return {"gains": self.CASTS[name], "alpha": self.py_random.uniform(*self.strength)}

    def apply(self, img: np.ndarray, gains: tuple[float, float, float], alpha: float, **params) -> np.ndarray:
        mix = 1.0 - alpha + alpha * np.asarray(gains, dtype=np.float32)
        return np.clip(img.astype(np.float32) * mix, 0, 255).astype(np.uint8)


def photometric_pipeline(strength: float = 1.0) -> A.Compose | None:
    """Brightness/contrast, noise, blur, grey, HSV/RGB shifts and unnatural light casts, on RGB uint8 crops.

    `strength` scales every transform: the magnitude of those that have one, the probability of grey and blur. 1.0 is
    the default recipe and 0 means no photometric change at all (None). Runs made before this rule (config without
    `photometric_rule`) scaled only brightness and contrast."""
    if strength < 0:
        raise UserError(f"--photometric {strength}: the strength must be 0 (none) or more")
    if strength == 0:
        return None
    s, p = strength, min(1.0, strength)
    return A.Compose(
        [
            A.RandomBrightnessContrast(brightness_limit=0.3 * s, contrast_limit=0.3 * s, p=0.7),
            A.HueSaturationValue(10 * s, 20 * s, 15 * s, p=0.3),
            A.RGBShift(15 * s, 15 * s, 15 * s, p=0.3),
            LightCast(strength=(0.3 * p, 0.8 * p), p=0.15),
            A.ToGray(p=0.1 * p),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25 * p),
            A.GaussNoise(std_range=(0.01 * s, 0.05 * s), p=0.25),
        ]
    )

"""Crop rule and affine geometry. All points are 0-based pixel centres; one 2x3 matrix maps image to crop.

The crop rule (carried by every exported model):
    side   = scale * max(width, height) of the box around the landmarks (or a detector box mapped to it)
    centre = centre of that box
    the square [centre - side/2, centre + side/2] is resampled to `size` x `size` pixels.
At eval `scale` is EVAL_CROP_SCALE. Model outputs are crop-normalised: u = (x_crop + 0.5) / size, so 0 and 1
are the crop's outer edges; `crop_to_image` maps them back to image pixels.
"""
from __future__ import annotations

import math

import numpy as np

EVAL_CROP_SCALE = 1.25


def landmark_box(points: np.ndarray) -> tuple[float, float, float]:
    """Centre x, centre y and side (max of width and height) of the points' bounding box."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0 + x1) / 2.0, float(y0 + y1) / 2.0, float(max(x1 - x0, y1 - y0))


def crop_matrix(
    centre: tuple[float, float],
    side: float,
    size: int,
    rotation_deg: float = 0.0,
    flip: bool = False,
) -> np.ndarray:
    """2x3 affine taking image pixel centres to crop pixel centres, rotating and mirroring about the crop centre."""
    s = size / side
    a = math.radians(rotation_deg)
    cos, sin = s * math.cos(a), s * math.sin(a)
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    if flip:
        linear = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ linear
    half = (size - 1) / 2.0
    offset = np.array([half, half]) - linear @ np.asarray(centre, dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def eval_crop_matrix(points_or_box: np.ndarray, size: int, scale: float = EVAL_CROP_SCALE) -> np.ndarray:
    cx, cy, side = landmark_box(points_or_box.reshape(-1, 2))
    return crop_matrix((cx, cy), side * scale, size)


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    import cv2  # imported here: the torch-free bench reads the crop constants on devices without opencv

    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(matrix)


def crop_to_normalised(points: np.ndarray, size: int) -> np.ndarray:
    return (points + 0.5) / size


def normalised_to_crop(points: np.ndarray, size: int) -> np.ndarray:
    return points * size - 0.5


def crop_to_image(normalised: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Map crop-normalised model output back to the original image's pixel centres."""
    return transform_points(normalised_to_crop(normalised, size), invert_affine(matrix))

"""Landmark overlays for photos and video frames, points coloured by the model's per-point confidence."""
from __future__ import annotations

import cv2
import numpy as np

# Confidence is trained as exp(-error / 2 px) at the model's input size, so a good point reads about 0.3-0.6: the scale
# saturates at GREEN_AT (an expected error of about 1.4 px in a 112 px crop) so that the colours separate.
GREEN_AT = 0.5


def confidence_colours(confidence: np.ndarray) -> np.ndarray:
    """(K, 3) RGB uint8 colours from red (confidence 0) through yellow (GREEN_AT / 2) to green (GREEN_AT and above)."""
    c = np.clip(np.asarray(confidence, np.float32) / GREEN_AT, 0.0, 1.0)
    red = np.where(c < 0.5, 1.0, 2.0 * (1.0 - c))
    green = np.where(c < 0.5, 2.0 * c, 1.0)
    return (np.stack([red, green, np.zeros_like(c)], axis=-1) * 255).astype(np.uint8)


def draw_face(image: np.ndarray, points: np.ndarray, confidence: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
    """Draw one face on an RGB image in place (and return it): its box in white and each point in its colour."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    radius = max(1, round(max(x1 - x0, y1 - y0) / 70))
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x0, y0), (x1, y1), (255, 255, 255), max(1, radius // 2), cv2.LINE_AA)
    for (x, y), colour in zip(points, confidence_colours(confidence)):
        cv2.circle(image, (int(round(x)), int(round(y))), radius, tuple(int(v) for v in colour), -1, cv2.LINE_AA)
    return image

"""Figures: CED curves, training curves, the loss-shape figure, per-region error bars (matplotlib, Agg backend) and
face overlays with landmarks drawn on them (OpenCV, RGB arrays)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from facelm.geometry import eval_crop_matrix, transform_points, warp_image  # noqa: E402
from facelm.losses import COORD_LOSSES  # noqa: E402
from facelm.metrics import CED_LIMIT, auc_at, ced_curve  # noqa: E402

GT_COLOUR = (0, 200, 0)  # RGB: ground truth green, prediction red on the face overlays
PRED_COLOUR = (230, 0, 0)
LABEL_HEIGHT = 18  # px of white band under each face tile for its label


def plot_ced(curves: dict[str, np.ndarray], path: Path, title: str = "CED", figsize: tuple[float, float] = (6, 4.5)) -> Path:
    """One curve per label, from per-image NME (fractions, not percent)."""
    fig, ax = plt.subplots(figsize=figsize)
    if len(curves) > 10:  # the default cycle has 10 colours: more curves would repeat one
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for label, nme in curves.items():
        thresholds, ced = ced_curve(nme)
        ax.plot(thresholds * 100, ced, label=f"{label} (NME {nme.mean() * 100:.2f}%, AUC {auc_at(nme):.3f})")
    ax.set(xlim=(0, CED_LIMIT * 100), ylim=(0, 1), xlabel="NME (% inter-ocular)", ylabel="fraction of images", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_training(history: list[dict], path: Path) -> Path:
    """Train loss and eval NME against epochs, from a run's metrics.jsonl rows."""
    return plot_training_runs({"": history}, path)


def plot_training_runs(histories: dict[str, list[dict]], path: Path) -> Path:
    """Train loss and eval NME against epochs, one line per labelled run (metrics.jsonl rows); a legend when labelled."""
    fig, (ax_loss, ax_nme) = plt.subplots(1, 2, figsize=(10, 4))
    for label, history in histories.items():
        ax_loss.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label=label)
        evals = [h for h in history if "eval_nme" in h]
        ax_nme.plot([h["epoch"] for h in evals], [h["eval_nme"] for h in evals], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="train loss", yscale="log")
    ax_nme.set(xlabel="epoch", ylabel="eval NME (%)")
    for ax in (ax_loss, ax_nme):
        ax.grid(alpha=0.3)
        if any(histories):
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_losses(path: Path, max_error_px: float = 20.0) -> Path:
    """Each coordinate loss against the residual (crop pixels), and its gradient magnitude."""
    d = torch.linspace(-max_error_px, max_error_px, 801, requires_grad=True)
    fig, (ax_val, ax_grad) = plt.subplots(1, 2, figsize=(10, 4))
    for name, fn in COORD_LOSSES.items():
        value = fn(d)
        (grad,) = torch.autograd.grad(value.sum(), d)
        ax_val.plot(d.detach(), value.detach(), label=name)
        ax_grad.plot(d.detach(), grad.abs(), label=name)
    ax_val.set(xlabel="residual (crop px)", ylabel="loss", ylim=(0, 60))
    ax_grad.set(xlabel="residual (crop px)", ylabel="|d loss / d residual|", ylim=(0, 12))
    for ax in (ax_val, ax_grad):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_region_nme(regions: dict[str, dict[str, float]], path: Path, title: str = "NME per face region") -> Path:
    """Grouped bars: for each region, one bar per model (mean NME over the region's points, percent)."""
    names = list(next(iter(regions.values())))
    x = np.arange(len(names))
    width = 0.8 / len(regions)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, values) in enumerate(regions.items()):
        bars = ax.bar(x + (i - (len(regions) - 1) / 2) * width, [values[n] for n in names], width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set(xticks=x, xticklabels=names, ylabel="NME (% inter-ocular)", title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def face_tile(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, label: str, size: int = 160) -> np.ndarray:
    """The eval crop of one face (RGB) with ground-truth and predicted points drawn on it, its label in a band below:
    shape (size + LABEL_HEIGHT, size, 3)."""
    import cv2

    matrix = eval_crop_matrix(gt, size)
    tile = np.full((size + LABEL_HEIGHT, size, 3), 255, np.uint8)
    tile[:size] = warp_image(image, matrix, size)
    for points, colour in ((gt, GT_COLOUR), (pred, PRED_COLOUR)):
        for x, y in transform_points(points, matrix):
            cv2.circle(tile[:size], (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
    cv2.putText(tile, label, (3, size + LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def tile_grid(tiles: list[np.ndarray], cols: int, gap: int = 4) -> np.ndarray:
    """Equal-sized tiles row by row, `cols` to a row, `gap` white pixels between them; a short last row is padded white."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return grid


def with_caption(image: np.ndarray, text: str, height: int = 24) -> np.ndarray:
    """The image under a white band holding one line of text."""
    import cv2

    band = np.full((height, image.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image])


def save_rgb(image: np.ndarray, path: Path) -> Path:
    plt.imsave(path, image)
    return Path(path)

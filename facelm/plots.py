"""Figures: CED curves, training curves and the loss-shape figure (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from facelm.losses import COORD_LOSSES  # noqa: E402
from facelm.metrics import CED_LIMIT, auc_at, ced_curve  # noqa: E402


def plot_ced(curves: dict[str, np.ndarray], path: Path, title: str = "CED") -> Path:
    """One curve per label, from per-image NME (fractions, not percent)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
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
    fig, (ax_loss, ax_nme) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history])
    ax_loss.set(xlabel="epoch", ylabel="train loss", yscale="log")
    evals = [h for h in history if "eval_nme" in h]
    ax_nme.plot([h["epoch"] for h in evals], [h["eval_nme"] for h in evals], marker="o")
    ax_nme.set(xlabel="epoch", ylabel="eval NME (%)")
    for ax in (ax_loss, ax_nme):
        ax.grid(alpha=0.3)
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

"""Coordinate losses (L1, L2, SmoothL1, Wing, Adaptive Wing) and the per-point confidence loss.

Coordinate losses take residuals in crop pixels, so their shape parameters (Wing's w and epsilon, Adaptive
Wing's omega, theta and epsilon) keep the meaning they have in the papers at any input size.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from facelm.errors import UserError


def l1(d: torch.Tensor) -> torch.Tensor:
    return d.abs()


def l2(d: torch.Tensor) -> torch.Tensor:
    return d.pow(2)


def smooth_l1(d: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return F.smooth_l1_loss(d, torch.zeros_like(d), reduction="none", beta=beta)


def wing(d: torch.Tensor, w: float = 10.0, epsilon: float = 2.0) -> torch.Tensor:
    """Feng et al. 2018: w*ln(1+|d|/eps) inside |d|<w, linear outside, continuous at w."""
    a = d.abs()
    c = w - w * math.log1p(w / epsilon)
    return torch.where(a < w, w * torch.log1p(a / epsilon), a - c)


def adaptive_wing(
    d: torch.Tensor, omega: float = 14.0, theta: float = 0.5, epsilon: float = 1.0, alpha: float = 2.1
) -> torch.Tensor:
    """Wang et al. 2019 in regression form (heatmap target y=0, so the exponent is alpha): quadratic-like near 0."""
    a = d.abs()
    ratio = theta / epsilon
    big_a = omega * (1.0 / (1.0 + ratio**alpha)) * alpha * ratio ** (alpha - 1.0) / epsilon
    c = theta * big_a - omega * math.log1p(ratio**alpha)
    return torch.where(a < theta, omega * torch.log1p((a / epsilon) ** alpha), big_a * a - c)


COORD_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": l1,
    "l2": l2,
    "smooth_l1": smooth_l1,
    "wing": wing,
    "adaptive_wing": adaptive_wing,
}


def get_coord_loss(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in COORD_LOSSES:
        raise UserError(f"unknown loss {name!r}: choose one of {', '.join(COORD_LOSSES)}")
    return COORD_LOSSES[name]


def confidence_target(error_px: torch.Tensor, tau_px: float) -> torch.Tensor:
    """Quality target in (0, 1]: exp(-error / tau). A point off by tau pixels has target 1/e."""
    return torch.exp(-error_px / tau_px)


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    size: int,
    coord_loss: Callable[[torch.Tensor], torch.Tensor],
    conf_weight: float = 0.5,
    tau_px: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked mean coordinate loss plus BCE of the confidence logit against an error-derived target.

    pred (B, K, 3), target (B, K, 2) and weight (B, K): coordinates crop-normalised, weight 0 for unsupervised
    points. The confidence target uses the detached error, so confidence never pulls on the coordinates. The loss is
    computed in fp32 whatever precision the forward pass ran in.
    """
    pred = pred.float()
    d = (pred[..., :2] - target) * size
    denom = weight.sum().clamp(min=1.0)
    coord = (coord_loss(d).sum(-1) * weight).sum() / denom
    error = d.detach().norm(dim=-1)
    conf = F.binary_cross_entropy_with_logits(pred[..., 2], confidence_target(error, tau_px), reduction="none")
    conf = (conf * weight).sum() / denom
    total = coord + conf_weight * conf
    return total, {"coord": coord.item(), "conf": conf.item(), "err_px": ((error * weight).sum() / denom).item()}


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    size: int,
    coord_loss: Callable[[torch.Tensor], torch.Tensor],
    conf_weight: float = 0.5,
    sample_weight: torch.Tensor | None = None,
    confidence_mean: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-to-student loss on (B, K, 3) outputs, each point weighted by the teacher's confidence.

    With c_k = sigmoid(teacher logit k), the coordinate term is mean_k(c_k / c_mean * loss(student_k - teacher_k))
    over all points (a plain mean, not divided by the sum of c), so the gradient on point k is exactly c_k / c_mean
    times the unweighted one: a point the teacher rates at 0.2 pulls a fifth as hard as one it rates at 1.0.
    `confidence_mean` (c_mean) sets the overall scale only: pass the teacher's mean confidence over the distillation
    set and a point of average confidence pulls as hard as a labelled point does in the ground-truth loss. The
    student's confidence logit learns c_k by BCE. The teacher is a constant here (no gradient flows into it).
    `sample_weight` (B,) scales each face's share of both terms, e.g. to distil less where ground truth also supervises.
    """
    student, teacher = student.float(), teacher.detach().float()
    confidence = torch.sigmoid(teacher[..., 2])
    per_face = torch.ones_like(confidence[:, :1]) if sample_weight is None else sample_weight[:, None]
    d = (student[..., :2] - teacher[..., :2]) * size
    coord = (coord_loss(d).sum(-1) * (confidence / confidence_mean) * per_face).mean()
    conf = (F.binary_cross_entropy_with_logits(student[..., 2], confidence, reduction="none") * per_face).mean()
    return coord + conf_weight * conf, {"kd_coord": coord.item(), "kd_conf": conf.item(),
                                        "kd_err_px": d.detach().norm(dim=-1).mean().item()}

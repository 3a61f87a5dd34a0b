"""Coordinate losses and the masked landmark loss with its confidence term."""
from __future__ import annotations

import math

import pytest
import torch

from facelm.errors import UserError
from facelm.losses import COORD_LOSSES, adaptive_wing, confidence_target, get_coord_loss, l1, landmark_loss, wing

SIZE = 64


def grad_at(loss, values) -> torch.Tensor:
    d = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    loss(d).sum().backward()
    return d.grad


@pytest.mark.parametrize("name", sorted(COORD_LOSSES))
def test_coord_loss_shape(name):
    loss = get_coord_loss(name)
    a = torch.linspace(0.0, 40.0, 801, dtype=torch.float64)
    values = loss(a)
    assert values[0].item() == 0.0
    assert torch.equal(loss(-a), values), "symmetric in the sign of the residual"
    assert (values >= 0).all()
    assert (values.diff() > 0).all(), "strictly increasing in |d|"


def test_get_coord_loss_rejects_unknown_names():
    assert get_coord_loss("wing") is wing
    with pytest.raises(UserError, match="huber"):
        get_coord_loss("huber")


@pytest.mark.parametrize("loss, switch", [(wing, 10.0), (adaptive_wing, 0.5)])
def test_piecewise_losses_are_continuous_at_the_switch(loss, switch):
    eps = 1e-9
    around = loss(torch.tensor([switch - eps, switch, switch + eps], dtype=torch.float64))
    assert (around.max() - around.min()).item() < 1e-4


def test_adaptive_wing_slope_is_continuous_at_theta():
    below, above = grad_at(adaptive_wing, [0.5 - 1e-7, 0.5 + 1e-7])
    assert below.item() == pytest.approx(above.item(), rel=1e-4)


def test_wing_amplifies_small_residuals_and_is_l1_beyond_w():
    small = [0.1, 1.0, 5.0, -0.1, -1.0, -5.0]
    assert (grad_at(wing, small).abs() > grad_at(l1, small).abs()).all()
    assert grad_at(wing, [0.1]).item() == pytest.approx(10.0 / 2.1)  # w / (epsilon + |d|)
    large = [10.5, 20.0, -30.0]
    assert grad_at(wing, large).tolist() == pytest.approx([1.0, 1.0, -1.0])


def test_confidence_target_decreases_with_error():
    error = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    target = confidence_target(error, tau_px=2.0)
    assert target[0].item() == 1.0
    assert target[3].item() == pytest.approx(math.exp(-1))
    assert (target.diff() < 0).all() and (target > 0).all()


def random_batch(seed: int, b: int = 3, k: int = 68):
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(b, k, 2, generator=gen)
    pred = torch.cat([target + 0.05 * torch.randn(b, k, 2, generator=gen), torch.randn(b, k, 1, generator=gen)], -1)
    weight = (torch.rand(b, k, generator=gen) > 0.3).float()
    return pred.requires_grad_(True), target, weight


def test_loss_is_in_crop_pixels_and_masked_mean():
    pred = torch.tensor([[[0.5 + 3 / SIZE, 0.5 - 4 / SIZE, 0.0], [0.9, 0.1, 0.0]]])
    target = torch.full((1, 2, 2), 0.5)
    total, parts = landmark_loss(pred, target, torch.tensor([[1.0, 0.0]]), SIZE, l1, conf_weight=0.0)
    assert total.item() == pytest.approx(7.0, rel=1e-5)  # |3| + |-4| crop pixels, the weight-0 point ignored
    assert parts["err_px"] == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("name", sorted(COORD_LOSSES))
def test_weight_zero_points_contribute_nothing(name):
    pred, target, weight = random_batch(0)
    total, _ = landmark_loss(pred, target, weight, SIZE, get_coord_loss(name), conf_weight=1.0)
    total.backward()
    off = weight == 0
    assert (pred.grad[off] == 0).all()
    assert (pred.grad[~off].abs().sum(-1) > 0).all()
    moved = pred.detach().clone()
    moved[off] += torch.tensor([0.3, -0.2, 5.0])
    again, _ = landmark_loss(moved, target, weight, SIZE, get_coord_loss(name), conf_weight=1.0)
    assert again.item() == pytest.approx(total.item(), rel=1e-6)


def coord_and_logit_grads(pred, target, weight, conf_weight):
    pred = pred.detach().clone().requires_grad_(True)
    total, _ = landmark_loss(pred, target, weight, SIZE, wing, conf_weight=conf_weight)
    total.backward()
    return pred.grad[..., :2], pred.grad[..., 2]


def test_confidence_term_does_not_pull_on_coordinates():
    pred, target, weight = random_batch(1)
    xy_without, logit_without = coord_and_logit_grads(pred, target, weight, conf_weight=0.0)
    xy_with, logit_with = coord_and_logit_grads(pred, target, weight, conf_weight=1.0)
    assert (logit_without == 0).all() and logit_with.abs().sum() > 0, "the confidence term is active"
    assert torch.equal(xy_with, xy_without)


def test_confident_perfect_prediction_scores_better_than_an_unsure_one():
    target = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(2))
    weight = torch.ones(2, 68)
    confident = torch.cat([target, torch.full((2, 68, 1), 8.0)], -1)
    unsure = torch.cat([target, torch.full((2, 68, 1), -8.0)], -1)
    low, parts = landmark_loss(confident, target, weight, SIZE, wing)
    high, _ = landmark_loss(unsure, target, weight, SIZE, wing)
    assert parts["coord"] == 0.0 and parts["err_px"] == 0.0
    assert low.item() < 0.01 < high.item()

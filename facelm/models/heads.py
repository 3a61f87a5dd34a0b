"""Landmark heads and the multi-head network that puts one head per annotation source on a shared trunk."""
from __future__ import annotations

import math

import torch
from torch import nn

from facelm.models.layers import conv_bn_act


class LandmarkHead(nn.Module):
    """1x1 conv, flatten, linear -> (B, K, 3): x, y crop-normalised (0..1 across the crop) and a confidence logit."""

    def __init__(self, in_channels: int, feature_hw: int, n_points: int, mid_channels: int = 64):
        super().__init__()
        self.n_points = n_points
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(mid_channels * feature_hw * feature_hw, n_points * 3)
        nn.init.normal_(self.fc.weight, std=1e-3)
        nn.init.zeros_(self.fc.bias)
        self.register_buffer("mean_shape", torch.full((n_points, 2), 0.5))

    def set_mean_shape(self, mean_shape: torch.Tensor) -> None:
        self.mean_shape.copy_(mean_shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.flatten(self.reduce(features), 1)).view(-1, self.n_points, 3)
        xy = out[..., :2] + self.mean_shape
        return torch.cat([xy, out[..., 2:]], dim=-1)


def upsample_block(channels: int) -> nn.Sequential:
    """Nearest x2, then a depthwise 3x3 and a pointwise conv: ops every exporter maps."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_act(channels, channels, 3, groups=channels),
                         conv_bn_act(channels, channels, 1))


class IntegralHead(nn.Module):
    """Heatmaps at 4x the trunk's resolution, read out by soft-argmax -> (B, K, 3) like `LandmarkHead`.

    x, y are the expected cell centre under each point's softmax over the heatmap (integral regression, Sun et al.
    2018), so they are trained by the same coordinate losses. The confidence logit is a second map read at the same
    weights: the confidence of where the point is predicted to be. `set_mean_shape` adds a broad Gaussian log-prior
    around the mean shape to the heatmap logits, the counterpart of the FC head starting from the mean shape.

    A soft-argmax only reaches the span of its cell centres, so the cells span the crop plus `margin` on each side:
    augmented crops put points at and past the crop's edge (up to about 0.05 of it), and cells only over the crop
    (reaching [1/32, 31/32] at 112 px) left those targets out of reach at full weight. Checkpoints keep their grid.
    """

    prior_sigma = 0.1
    margin = 0.125

    def __init__(self, in_channels: int, feature_hw: int, n_points: int, mid_channels: int = 64):
        super().__init__()
        self.n_points = n_points
        self.decode = nn.Sequential(conv_bn_act(in_channels, mid_channels, 1), upsample_block(mid_channels),
                                    upsample_block(mid_channels))
        self.heatmap = nn.Conv2d(mid_channels, n_points, 1)
        self.confidence = nn.Conv2d(mid_channels, n_points, 1)
        nn.init.normal_(self.heatmap.weight, std=1e-3)
        nn.init.zeros_(self.heatmap.bias)
        side = 4 * feature_hw
        centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side * (1 + 2 * self.margin) - self.margin
        gy, gx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("grid", torch.stack([gx.flatten(), gy.flatten()], dim=-1))
        self.register_buffer("log_prior", torch.zeros(n_points, side * side))

    def set_mean_shape(self, mean_shape: torch.Tensor) -> None:
        squared = ((self.grid[None] - mean_shape[:, None].to(self.grid)) ** 2).sum(-1)
        self.log_prior.copy_(-squared / (2 * self.prior_sigma**2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.decode(features)
        weights = torch.softmax(torch.flatten(self.heatmap(maps), 2) + self.log_prior, dim=-1)
        xy = torch.matmul(weights, self.grid)
        confidence = (weights * torch.flatten(self.confidence(maps), 2)).sum(-1, keepdim=True)
        return torch.cat([xy, confidence], dim=-1)


HEADS = {"fc": LandmarkHead, "integral": IntegralHead}


class LandmarkNet(nn.Module):
    """A trunk with one head per source (`HEADS[head]`); `forward` returns {head name: (B, K, 3)}."""

    def __init__(self, trunk: nn.Module, heads: dict[str, int], input_size: int = 112, head_channels: int = 64,
                 head: str = "fc"):
        super().__init__()
        if not heads:
            raise ValueError("a LandmarkNet needs at least one head")
        self.trunk = trunk
        self.input_size = input_size
        self.head_type = head
        feature_hw = math.ceil(input_size / trunk.stride)
        self.heads = nn.ModuleDict(
            {name: HEADS[head](trunk.out_channels, feature_hw, k, head_channels) for name, k in heads.items()}
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward_head(self, features: torch.Tensor, head: str) -> torch.Tensor:
        return self.heads[head](features)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(x)
        return {name: head(features) for name, head in self.heads.items()}


class SingleHead(nn.Module):
    """One head of a LandmarkNet as a plain tensor->tensor module, for inference and export."""

    def __init__(self, net: LandmarkNet, head: str):
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), self.head)

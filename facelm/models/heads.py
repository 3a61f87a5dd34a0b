"""Landmark heads and the multi-head network that puts one head per annotation source on a shared trunk."""
from __future__ import annotations

import math

import torch
from torch import nn


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


class LandmarkNet(nn.Module):
    """A trunk with one `LandmarkHead` per source; `forward` returns {head name: (B, K, 3)}."""

    def __init__(self, trunk: nn.Module, heads: dict[str, int], input_size: int = 112, head_channels: int = 64):
        super().__init__()
        if not heads:
            raise ValueError("a LandmarkNet needs at least one head")
        self.trunk = trunk
        self.input_size = input_size
        feature_hw = math.ceil(input_size / trunk.stride)
        self.heads = nn.ModuleDict(
            {name: LandmarkHead(trunk.out_channels, feature_hw, k, head_channels) for name, k in heads.items()}
        )

    @property
    def head_points(self) -> dict[str, int]:
        return {name: head.n_points for name, head in self.heads.items()}

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

"""ShuffleNetV2 trunks (Ma et al. 2018) in plain torch, at width 0.5 / 1.0."""
from __future__ import annotations

import torch
from torch import nn

from facelm.models._registry import register_model
from facelm.models.heads import LandmarkNet
from facelm.models.layers import conv_bn_act

_STAGE_REPEATS = (4, 8, 4)
_WIDTHS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024)}


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = cout // 2
        if stride > 1:
            self.left = nn.Sequential(conv_bn_act(cin, cin, 3, stride, groups=cin, act=None), conv_bn_act(cin, branch, 1))
        right_in = cin if stride > 1 else branch
        self.right = nn.Sequential(
            conv_bn_act(right_in, branch, 1),
            conv_bn_act(branch, branch, 3, stride, groups=branch, act=None),
            conv_bn_act(branch, branch, 1),
        )

    def forward(self, x):
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)
            out = torch.cat([keep, self.right(work)], dim=1)
        else:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        return channel_shuffle(out)


class ShuffleNetV2Trunk(nn.Module):
    stride = 32

    def __init__(self, width: float = 1.0, in_chans: int = 3):
        super().__init__()
        if width not in _WIDTHS:
            raise ValueError(f"ShuffleNetV2 width must be one of {sorted(_WIDTHS)}")
        channels = _WIDTHS[width]
        layers = [conv_bn_act(in_chans, channels[0], 3, 2), nn.MaxPool2d(3, 2, 1)]
        cin = channels[0]
        for repeats, cout in zip(_STAGE_REPEATS, channels[1:4]):
            layers += [ShuffleBlock(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(repeats)]
            cin = cout
        layers.append(conv_bn_act(cin, channels[4], 1))
        self.out_channels = channels[4]
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


@register_model
def shufflenetv2_050(heads: dict[str, int], input_size: int = 112, in_chans: int = 3, **kw) -> LandmarkNet:
    return LandmarkNet(ShuffleNetV2Trunk(0.5, in_chans), heads, input_size, **kw)


@register_model
def shufflenetv2_100(heads: dict[str, int], input_size: int = 112, in_chans: int = 3, **kw) -> LandmarkNet:
    return LandmarkNet(ShuffleNetV2Trunk(1.0, in_chans), heads, input_size, **kw)

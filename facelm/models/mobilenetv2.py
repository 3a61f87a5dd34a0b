"""MobileNetV2 trunks (Sandler et al. 2018) in plain torch, at width 0.25 / 0.35 / 0.5 / 1.0."""
from __future__ import annotations

from torch import nn

from facelm.models._registry import register_model
from facelm.models.heads import LandmarkNet
from facelm.models.layers import conv_bn_act, make_divisible

# expansion t, channels c, repeats n, first stride s
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers = [conv_bn_act(cin, hidden, 1, act="relu6")] if expansion != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act="relu6"), conv_bn_act(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2Trunk(nn.Module):
    stride = 32

    def __init__(self, width: float = 1.0, last_channels: int | None = None, in_chans: int = 3):
        super().__init__()
        cin = make_divisible(32 * width)
        layers = [conv_bn_act(in_chans, cin, 3, 2, act="relu6")]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.out_channels = last_channels or make_divisible(1280 * max(1.0, width))
        layers.append(conv_bn_act(cin, self.out_channels, 1, act="relu6"))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


def _create(width: float, heads: dict[str, int], input_size: int = 112, in_chans: int = 3,
            last_channels: int | None = None, **kw) -> LandmarkNet:
    return LandmarkNet(MobileNetV2Trunk(width, last_channels, in_chans), heads, input_size, **kw)


@register_model
def mobilenetv2_025(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create(0.25, heads, last_channels=kw.pop("last_channels", 256), **kw)


@register_model
def mobilenetv2_035(heads: dict[str, int], **kw) -> LandmarkNet:
    # a narrower head (48 channels) keeps the fp32 file under 2 MB at this width
    kw.setdefault("head_channels", 48)
    return _create(0.35, heads, last_channels=kw.pop("last_channels", 256), **kw)


@register_model
def mobilenetv2_050(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create(0.5, heads, last_channels=kw.pop("last_channels", 384), **kw)


@register_model
def mobilenetv2_100(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create(1.0, heads, **kw)

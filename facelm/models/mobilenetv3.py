"""MobileNetV3-small trunk (Howard et al. 2019) in plain torch."""
from __future__ import annotations

from torch import nn

from facelm.models._registry import register_model
from facelm.models.heads import LandmarkNet
from facelm.models.layers import SqueezeExcite, conv_bn_act, make_divisible

# kernel, expanded channels, out channels, squeeze-excite, activation, stride
_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
)


class MBConv(nn.Module):
    def __init__(self, cin: int, k: int, expanded: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        layers = [conv_bn_act(cin, expanded, 1, act=act)] if expanded != cin else []
        layers.append(conv_bn_act(expanded, expanded, k, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn_act(expanded, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV3SmallTrunk(nn.Module):
    stride = 32

    def __init__(self, width: float = 1.0, in_chans: int = 3):
        super().__init__()
        cin = make_divisible(16 * width)
        layers = [conv_bn_act(in_chans, cin, 3, 2, act="hardswish")]
        for k, exp, c, se, act, s in _SMALL:
            cout = make_divisible(c * width)
            layers.append(MBConv(cin, k, make_divisible(exp * width), cout, se, act, s))
            cin = cout
        self.out_channels = make_divisible(576 * width)
        layers.append(conv_bn_act(cin, self.out_channels, 1, act="hardswish"))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


@register_model
def mobilenetv3_small(heads: dict[str, int], input_size: int = 112, in_chans: int = 3, **kw) -> LandmarkNet:
    return LandmarkNet(MobileNetV3SmallTrunk(1.0, in_chans), heads, input_size, **kw)

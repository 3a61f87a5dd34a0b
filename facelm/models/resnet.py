"""ResNet-18/34/50 trunks in plain torch (torchvision's CUDA-only build cannot be imported here)."""
from __future__ import annotations

from torch import nn

from facelm.models._registry import register_model
from facelm.models.heads import LandmarkNet


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(_conv_bn(cin, width, 3, stride), _conv_bn(width, cout, 3, act=False))
        self.shortcut = _conv_bn(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride), _conv_bn(width, cout, 1, act=False)
        )
        self.shortcut = _conv_bn(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool) and four stages; output stride 32."""

    stride = 32

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, int, int, int], in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(in_chans, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.body[-1][1].weight)

    def forward(self, x):
        return self.stages(self.stem(x))


def _create_resnet(block, depths, heads: dict[str, int], input_size: int = 112, in_chans: int = 3, **kw) -> LandmarkNet:
    return LandmarkNet(ResNetTrunk(block, depths, in_chans), heads, input_size, **kw)


@register_model
def resnet18(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create_resnet(BasicBlock, (2, 2, 2, 2), heads, **kw)


@register_model
def resnet34(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create_resnet(BasicBlock, (3, 4, 6, 3), heads, **kw)


@register_model
def resnet50(heads: dict[str, int], **kw) -> LandmarkNet:
    return _create_resnet(Bottleneck, (3, 4, 6, 3), heads, **kw)

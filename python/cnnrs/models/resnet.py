"""ResNets: torchvision's ImageNet family (resnet18/34/50/101/152, same
state_dict keys, shapes and parameter counts) and the CIFAR family of He et
al. 2016, section 4.2 (resnet20/32/44/56)."""

from __future__ import annotations

from typing import List, Optional, Type, Union

import numpy as np

from .. import nn
from .._tensor import Tensor

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "CifarResNet", "resnet18", "resnet34",
           "resnet50", "resnet101", "resnet152", "resnet20", "resnet32", "resnet44", "resnet56"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """3x3 - BN - ReLU - 3x3 - BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - BN - ReLU - 3x3 (stride here, as torchvision v1.5) - BN - ReLU -
    1x1 (x4) - BN, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _init_resnet(model: nn.Module, zero_init_residual: bool) -> None:
    # torchvision: He normal (fan_out) for convs, BN weight 1 / bias 0.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7/2 stem, 3x3/2 max pool, four stages
    (64/128/256/512 planes), global average pool, fully connected layer.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; 224x224 is the
    usual input, any size >= 32 works.
    """

    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: List[int],
                 num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_resnet(self, zero_init_residual)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    """ResNet-18 (11,689,512 parameters for 1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kw)


def resnet34(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    """ResNet-34 (21,797,672 parameters for 1000 classes)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kw)


def resnet50(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    """ResNet-50 (25,557,032 parameters for 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kw)


def resnet101(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    """ResNet-101 (44,549,160 parameters for 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, **kw)


def resnet152(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    """ResNet-152 (60,192,808 parameters for 1000 classes)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, **kw)


class _ShortcutA(nn.Module):
    """He et al.'s option A shortcut: subsample by the stride and pad the new
    channels with zeros, parameter-free. Written as a fixed 1x1 convolution
    whose weight embeds the identity (not a parameter, not in the state dict)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        w = np.zeros((planes, in_planes, 1, 1), dtype=np.float32)
        w[np.arange(in_planes), np.arange(in_planes)] = 1.0
        self._weight = Tensor(w)
        self.stride = stride

    def forward(self, x):
        return nn.functional.conv2d(x, self._weight, None, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero-padded channels"


class CifarBlock(nn.Module):
    """BasicBlock of the CIFAR ResNets, with the option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut = (_ShortcutA(in_planes, planes, stride)
                         if stride != 1 or in_planes != planes else nn.Identity())

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: 3x3 conv (16), three stages of ``n``
    blocks with 16/32/64 filters on 32x32/16x16/8x8 maps, global average pool,
    fully connected layer; 6n+2 weighted layers; option-A shortcuts.

    Shape: ``(N, in_channels, 32, 32)`` -> ``(N, num_classes)`` (other sizes work).
    """

    def __init__(self, n: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        blocks, in_planes = [], 16
        for stage, planes in enumerate((16, 32, 64)):
            layer = []
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layer.append(CifarBlock(in_planes, planes, stride))
                in_planes = planes
            blocks.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = blocks
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-20 (269,722 parameters for 10 classes, option-A shortcuts)."""
    return CifarResNet(3, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(5, num_classes, in_channels)


def resnet44(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(7, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(9, num_classes, in_channels)

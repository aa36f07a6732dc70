"""Layers and containers with PyTorch's names: ``cnnrs.nn``."""

from . import functional, init
from .conv import Conv2d
from .layers import Flatten, Identity, ReLU
from .module import Module, ModuleList, Parameter, Sequential

__all__ = [
    "functional", "init",
    "Module", "ModuleList", "Parameter", "Sequential",
    "Flatten", "Identity", "ReLU",
    "Conv2d",
]

"""Layers and containers with PyTorch's names: ``cnnrs.nn``."""

from . import functional, init
from .layers import Flatten, Identity, ReLU
from .linear import Linear
from .loss import CrossEntropyLoss, LogSoftmax, MSELoss, Softmax
from .module import Module, ModuleList, Parameter, Sequential
from .pooling import MaxPool2d

__all__ = [
    "functional", "init",
    "Module", "ModuleList", "Parameter", "Sequential",
    "Flatten", "Identity", "ReLU",
    "Linear", "MaxPool2d",
    "CrossEntropyLoss", "MSELoss", "Softmax", "LogSoftmax",
]

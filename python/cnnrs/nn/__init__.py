"""Layers and containers with PyTorch's names: ``cnnrs.nn``."""

from . import functional, init
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .dropout import Cutout, Dropout, Dropout2d, MaxPoolDropout2d
from .layers import Flatten, Identity, ReLU
from .linear import Linear
from .local import LocallyConnected2d
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, DiceLoss, LogSoftmax, MSELoss, Softmax
from .module import Module, ModuleList, Parameter, Sequential
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .upsampling import Upsample

__all__ = [
    "functional", "init",
    "Module", "ModuleList", "Parameter", "Sequential",
    "Flatten", "Identity", "ReLU",
    "Conv2d", "ConvTranspose2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Upsample",
    "BatchNorm1d", "BatchNorm2d",
    "Dropout", "Dropout2d", "Cutout", "MaxPoolDropout2d", "LocallyConnected2d",
    "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "DiceLoss", "Softmax", "LogSoftmax",
]

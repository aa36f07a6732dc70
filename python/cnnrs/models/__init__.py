"""Model builders, assembled from ``cnnrs.nn`` only."""

from .alexnet import AlexNet, alexnet
from .lenet import LeNet5, lenet5
from .resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet152,
)
from .summary import Summary, summary
from .unet import UNet, unet

__all__ = ["LeNet5", "lenet5", "AlexNet", "alexnet", "ResNet", "CifarResNet", "BasicBlock",
           "Bottleneck", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "resnet20", "resnet32", "resnet44", "resnet56", "UNet", "unet", "get_model", "MODELS",
           "summary", "Summary"]

MODELS = {
    "lenet": lenet5, "lenet5": lenet5, "alexnet": alexnet,
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
    "resnet152": resnet152, "resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44,
    "resnet56": resnet56, "unet": unet,
}


def get_model(name: str, **kwargs):
    """Builds a model by name (see ``MODELS``)."""
    try:
        builder = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return builder(**kwargs)

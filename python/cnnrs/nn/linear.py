"""Fully connected layer: Linear."""

from __future__ import annotations

import numbers

import numpy as np

from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["Linear"]


def _features(v, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"Linear: {name} must be an int, got {type(v).__name__} ({v!r})")
    if v < 0:
        raise ValueError(f"Linear: {name} must be non-negative, got {v}")
    return int(v)


class Linear(Module):
    """Fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``.

    Args:
        in_features: size of each input sample (the last dim).
        out_features: size of each output sample.
        bias: learn an additive bias. Default True.

    Attributes:
        weight: ``(out_features, in_features)``, initialised as PyTorch does
            (``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(in), 1/sqrt(in))``).
        bias: ``(out_features,)`` from ``U(-1/sqrt(in), 1/sqrt(in))``, or None.

    Shape:
        Input ``(*, H_in)``, output ``(*, H_out)`` with ``H_in = in_features``
        and ``H_out = out_features``.

    Raises:
        TypeError: non-integer feature counts.
        ValueError: negative feature counts; an input whose last dim is not
            ``in_features`` (when called).

    Example:
        >>> fc = nn.Linear(120, 84)
        >>> fc(cnnrs.randn(8, 120)).shape
        (8, 84)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _features(in_features, "in_features")
        self.out_features = _features(out_features, "out_features")
        w, b = init.default_layer_init((self.out_features, self.in_features),
                                       self.in_features, bool(bias))
        self.weight = Parameter(w)
        if b is not None:
            self.bias = Parameter(b)
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Draws the weights (and bias) again with the default initialisation."""
        w, b = init.default_layer_init((self.out_features, self.in_features),
                                       self.in_features, self.bias is not None)
        self.weight._v.set_value(w)
        if b is not None:
            self.bias._v.set_value(b)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

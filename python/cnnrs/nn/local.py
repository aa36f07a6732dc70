"""LocallyConnected2d: convolution without weight sharing."""

from __future__ import annotations

import math

from . import functional as F
from .init import uniform
from .module import Module, Parameter

__all__ = ["LocallyConnected2d"]


class LocallyConnected2d(Module):
    """Like ``Conv2d`` but every output position has its own filters (the
    middle ground between a fully connected and a convolutional layer; Keras'
    ``LocallyConnected2D``). Not part of PyTorch.

    Args:
        in_channels, out_channels: channel counts.
        input_size: ``(H, W)`` of the input (or an int): the number of filter
            banks depends on it.
        kernel_size, stride, padding: int or pair; zero padding.
        bias: learnable ``(C_out, H_out, W_out)`` bias.

    Shape: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H + 2*padding - kH) // stride + 1``. Weight
    ``(H_out, W_out, C_out, C_in, kH, kW)``; initialised like ``Conv2d``
    (uniform with bound ``1/sqrt(C_in*kH*kW)``).
    """

    def __init__(self, in_channels: int, out_channels: int, input_size, kernel_size,
                 stride=1, padding=0, bias: bool = True):
        super().__init__()
        op = "LocallyConnected2d"
        self.in_channels = F._pos_int(op, "in_channels", in_channels)
        self.out_channels = F._pos_int(op, "out_channels", out_channels)
        self.input_size = F._pair(op, "input_size", input_size)
        self.kernel_size = F._pair(op, "kernel_size", kernel_size)
        self.stride = F._pair(op, "stride", stride)
        self.padding = F._int_pair(padding, "padding", op)
        h_out, w_out = ((n + 2 * p - k) // s + 1 for n, k, s, p in
                        zip(self.input_size, self.kernel_size, self.stride, self.padding))
        if h_out < 1 or w_out < 1:
            raise ValueError(f"{op}: kernel {self.kernel_size} does not fit the padded input "
                             f"{self.input_size}")
        self.output_size = (h_out, w_out)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(uniform((h_out, w_out, out_channels, in_channels)
                                        + self.kernel_size, bound))
        if bias:
            self.bias = Parameter(uniform((out_channels, h_out, w_out), bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.locally_connected2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")



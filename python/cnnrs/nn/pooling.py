"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(Module):
    """2-D max pooling, as ``torch.nn.MaxPool2d``.

    Args:
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: window step, an int or a pair; default (None): ``kernel_size``.
        padding: implicit -inf padding per side (at most half the kernel).
        dilation: spacing between window taps. Default 1.
        return_indices: also return the flat per-plane argmax indices as a
            numpy int64 array (see :func:`cnnrs.nn.functional.max_pool2d`).
        ceil_mode: round the output size up instead of down.

    Shape:
        Input ``(N, C, H_in, W_in)``, output ``(N, C, H_out, W_out)`` with
        ``H_out = floor((H_in + 2*padding[0] - dilation[0]*(kernel_size[0]-1) - 1)
        / stride[0]) + 1`` (``ceil`` in ceil mode).

    Raises:
        TypeError: non-integer sizes (at construction).
        ValueError: negative sizes (at construction); a zero kernel, stride
            or dilation, padding over half the kernel, a non-4-D input or an
            output smaller than 1x1 (when called).

    Example:
        >>> pool = nn.MaxPool2d(2)
        >>> pool(cnnrs.randn(1, 16, 28, 28)).shape
        (1, 16, 14, 14)
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        # Check types now so a bad layer fails where it is built.
        for name, v in (("kernel_size", kernel_size), ("padding", padding),
                        ("dilation", dilation)):
            F._int_pair(v, name, "MaxPool2d")
        if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
            F._int_pair(stride, "stride", "MaxPool2d")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-D average pooling, as ``torch.nn.AvgPool2d``; see
    :func:`cnnrs.nn.functional.avg_pool2d` for the arguments and shapes."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Any = None):
        super().__init__()
        F._int_pair(kernel_size, "kernel_size", "AvgPool2d")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling to a fixed output size, as
    ``torch.nn.AdaptiveAvgPool2d`` (``AdaptiveAvgPool2d(1)`` is global average
    pooling). Shape: ``(N, C, H, W)`` -> ``(N, C, *output_size)``."""

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

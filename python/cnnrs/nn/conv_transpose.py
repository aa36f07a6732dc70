"""Transposed convolution layer: ``ConvTranspose2d``."""

from __future__ import annotations

from typing import Optional, Sequence

from . import functional as F
from . import init
from .conv import check_layer_args
from .functional import _conv_int, _conv_pair
from .module import Module, Parameter

__all__ = ["ConvTranspose2d"]


class ConvTranspose2d(Module):
    """2-D transposed convolution layer, as ``torch.nn.ConvTranspose2d`` (the
    U-Net "up-convolution" is ``ConvTranspose2d(c, c // 2, 2, stride=2)``).

    Args:
        in_channels: channels of the input, ``C_in``.
        out_channels: channels produced, ``C_out``.
        kernel_size: int or ``(kH, kW)``.
        stride: int or ``(sH, sW)``. Default: 1.
        padding: int or ``(pH, pW)`` rows/columns removed from each side of the
            full output. Default: 0.
        output_padding: int or ``(opH, opW)`` extra rows/columns on the
            bottom/right; each smaller than the stride or the dilation.
            Default: 0.
        groups: channel groups; must divide ``in_channels`` and
            ``out_channels``. Default: 1.
        bias: learn an additive bias per output channel. Default: True.
        dilation: int or ``(dH, dW)``. Default: 1.

    Attributes:
        weight: ``(in_channels, out_channels // groups, kH, kW)``, initialised
            from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
            ``fan_in = out_channels // groups * kH * kW`` (PyTorch computes the
            fan-in of a transposed conv's weight from its dim 1, so this is
            PyTorch's default ``kaiming_uniform_(a=sqrt(5))``).
        bias: ``(out_channels,)`` from the same distribution, or None.

    Shape:
        - input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output
          ``(N, C_out, H_out, W_out)`` with
          ``H_out = (H - 1)*sH - 2*pH + dH*(kH - 1) + opH + 1`` (same for W).
        - ``forward(x, output_size=(H_out, W_out))`` picks the output padding
          that gives that size (as PyTorch).

    Raises:
        TypeError: non-integer (or bool) sizes.
        ValueError: non-positive sizes, groups that do not divide the
            channels, negative padding, output_padding not smaller than the
            stride or the dilation, an unreachable ``output_size``.

    Example:
        >>> up = nn.ConvTranspose2d(128, 64, 2, stride=2)
        >>> up(cnnrs.randn(1, 128, 28, 28)).shape
        (1, 64, 56, 56)

    Differences from PyTorch: no ``padding_mode`` (zeros only), no
    ``device``/``dtype`` arguments (float32 on the CPU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
    ):
        super().__init__()
        op = "ConvTranspose2d"
        in_channels = _conv_int(in_channels, op, "in_channels")
        out_channels = _conv_int(out_channels, op, "out_channels")
        kernel_size = _conv_pair(kernel_size, op, "kernel_size")
        stride = _conv_pair(stride, op, "stride")
        padding = _conv_pair(padding, op, "padding")
        output_padding = _conv_pair(output_padding, op, "output_padding")
        dilation = _conv_pair(dilation, op, "dilation")
        groups = _conv_int(groups, op, "groups")
        check_layer_args(op, in_channels, out_channels, kernel_size, stride, dilation, groups,
                         bias)
        for name, pair in (("padding", padding), ("output_padding", output_padding)):
            if min(pair) < 0:
                raise ValueError(f"ConvTranspose2d: {name} must be non-negative, got {pair}")
        for i in range(2):
            if output_padding[i] >= stride[i] and output_padding[i] >= dilation[i]:
                raise ValueError(
                    f"ConvTranspose2d: output_padding must be smaller than either stride or "
                    f"dilation, got output_padding {output_padding}, stride {stride}, "
                    f"dilation {dilation}"
                )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.groups = groups
        self.dilation = dilation
        kh, kw = kernel_size
        # PyTorch's fan-in of a (C_in, C_out/groups, kH, kW) weight is
        # size(1) * kH * kW; the bias uses the same bound.
        fan_in = out_channels // groups * kh * kw
        bound = init.kaiming_uniform_bound(fan_in)
        self.weight = Parameter(init.uniform((in_channels, out_channels // groups, kh, kw), bound))
        if bias:
            self.bias = Parameter(init.uniform((out_channels,), bound))
        else:
            self.register_parameter("bias", None)

    def _output_padding(self, x_shape: tuple, output_size: Optional[Sequence[int]]) -> tuple:
        if output_size is None:
            return self.output_padding
        size = [int(v) for v in output_size]
        if len(size) == len(x_shape):
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(
                f"ConvTranspose2d: output_size must have 2 or {len(x_shape)} elements (got "
                f"{len(size)})"
            )
        pad = []
        for i in range(2):
            n = x_shape[-2 + i]
            smallest = ((n - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            largest = smallest + max(self.stride[i], self.dilation[i]) - 1
            if not smallest <= size[i] <= largest:
                raise ValueError(
                    f"ConvTranspose2d: requested an output size of {tuple(size)}, but valid "
                    f"sizes along dim {i + 2} range from {smallest} to {largest} (for an "
                    f"input of {tuple(x_shape[-2:])})"
                )
            pad.append(size[i] - smallest)
        return tuple(pad)

    def forward(self, x, output_size: Optional[Sequence[int]] = None):
        x = F._t(x)
        op = self._output_padding(x.shape, output_size)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, op,
                                  self.groups, self.dilation)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

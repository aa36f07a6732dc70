"""Convolution layers: ``Conv2d``."""

from __future__ import annotations

from . import functional as F
from . import init
from .functional import _conv_int, _conv_pair
from .module import Module, Parameter

__all__ = ["Conv2d"]


def check_layer_args(op: str, in_channels: int, out_channels: int, kernel_size: tuple,
                     stride: tuple, dilation: tuple, groups: int, bias) -> None:
    """The construction checks shared by Conv2d and ConvTranspose2d (arguments
    already normalised to ints and pairs)."""
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"{op}: in_channels and out_channels must be positive, got "
                         f"{in_channels} and {out_channels}")
    for name, pair in (("kernel_size", kernel_size), ("stride", stride),
                       ("dilation", dilation)):
        if min(pair) < 1:
            raise ValueError(f"{op}: {name} must be positive, got {pair}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be positive, got {groups}")
    for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
        if c % groups:
            raise ValueError(f"{op}: {name} ({c}) must be divisible by groups ({groups})")
    if not isinstance(bias, (bool, int)):
        raise TypeError(f"{op}: bias must be a bool, got {type(bias).__name__}")


class Conv2d(Module):
    """2-D convolution layer, as ``torch.nn.Conv2d``.

    Args:
        in_channels: channels of the input, ``C_in``.
        out_channels: channels produced, ``C_out``.
        kernel_size: int or ``(kH, kW)``.
        stride: int or ``(sH, sW)``. Default: 1.
        padding: int, ``(pH, pW)``, ``'valid'`` or ``'same'`` (stride 1 only).
            Default: 0.
        dilation: int or ``(dH, dW)``. Default: 1.
        groups: channel groups; must divide ``in_channels`` and
            ``out_channels``. Default: 1.
        bias: learn an additive bias per output channel. Default: True.

    Attributes:
        weight: ``(out_channels, in_channels // groups, kH, kW)``, initialised
            from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
            ``fan_in = in_channels // groups * kH * kW`` (PyTorch's default,
            ``kaiming_uniform_(a=sqrt(5))``).
        bias: ``(out_channels,)`` from the same distribution, or None.

    Shape:
        - input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output
          ``(N, C_out, H_out, W_out)`` with
          ``H_out = (H + 2*pH - dH*(kH - 1) - 1) // sH + 1`` (same for W).

    Raises:
        TypeError: non-integer (or bool) sizes.
        ValueError: non-positive sizes, groups that do not divide the
            channels, an unknown padding string, ``'same'`` with stride > 1.

    Example:
        >>> conv = nn.Conv2d(3, 16, 3, padding=1)
        >>> conv(cnnrs.randn(8, 3, 32, 32)).shape
        (8, 16, 32, 32)

    Differences from PyTorch: no ``padding_mode`` (zero padding only), no
    ``device``/``dtype`` arguments (float32 on the CPU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        op = "Conv2d"
        in_channels = _conv_int(in_channels, op, "in_channels")
        out_channels = _conv_int(out_channels, op, "out_channels")
        kernel_size = _conv_pair(kernel_size, op, "kernel_size")
        stride = _conv_pair(stride, op, "stride")
        dilation = _conv_pair(dilation, op, "dilation")
        groups = _conv_int(groups, op, "groups")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"Conv2d: padding must be 'same', 'valid', an int or a pair of ints; "
                    f"got {padding!r}"
                )
            if padding == "same" and stride != (1, 1):
                raise ValueError(
                    f"Conv2d: padding='same' is not supported for strided convolutions "
                    f"(stride={stride})"
                )
        else:
            padding = _conv_pair(padding, op, "padding")
            if min(padding) < 0:
                raise ValueError(f"Conv2d: padding must be non-negative, got {padding}")
        check_layer_args(op, in_channels, out_channels, kernel_size, stride, dilation, groups,
                         bias)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        kh, kw = kernel_size
        fan_in = in_channels // groups * kh * kw
        w, b = init.default_layer_init(
            (out_channels, in_channels // groups, kh, kw), fan_in, bool(bias)
        )
        self.weight = Parameter(w)
        if b is not None:
            self.bias = Parameter(b)
        else:
            self.register_parameter("bias", None)

    supports_fused_relu = True

    def forward(self, x, relu: bool = False):
        """``relu=True`` returns ``relu(conv(x))`` from one fused kernel."""
        fn = F.conv2d_relu if relu else F.conv2d
        return fn(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                  self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

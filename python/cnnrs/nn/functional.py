"""The ops as plain functions, with PyTorch's names and argument order.

Every function accepts :class:`cnnrs.Tensor` or numpy arrays (converted to
float32) and returns a Tensor. The computation, forward and backward, runs in
Rust with the GIL released.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any, Optional, Sequence

import numpy as np

from .. import _native
from .._tensor import Tensor, _int, as_tensor

__all__ = ["relu", "flatten", "batch_norm", "dropout", "dropout2d", "cutout",
           "max_pool_dropout2d", "locally_connected2d"]


def _t(x: Any) -> Tensor:
    return as_tensor(x)


def batch_norm(input: Any, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Any] = None, bias: Optional[Any] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over the channel dim of ``(N, C)``, ``(N, C, L)`` or
    ``(N, C, H, W)`` input, as ``torch.nn.functional.batch_norm``.

    Args:
        input: ``(N, C, *)``.
        running_mean, running_var: ``(C,)`` tensors, updated in place when
            ``training`` (unbiased variance, as PyTorch); used instead of the
            batch statistics when not training. May be None when training.
        weight, bias: optional ``(C,)`` affine parameters (gamma, beta).
        training: normalise with batch statistics.
        momentum: ``running = (1 - momentum) * running + momentum * batch``.
        eps: added to the variance.

    Shape: output has the input's shape.

    Raises:
        ValueError: bad rank or parameter lengths, one value per channel in
            training, eval without running statistics.

    Example:
        >>> y = F.batch_norm(x, None, None, training=True)
    """
    def opt(v):
        return None if v is None else as_tensor(v)._v

    return Tensor._wrap(_native.batch_norm(
        _t(input)._v, opt(running_mean), opt(running_var), opt(weight), opt(bias),
        bool(training), float(momentum), float(eps)))


def _check_p(op: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


def _pos_int(op: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{op}: {name} must be at least 1, got {v}")
    return v


def _pair(op: str, name: str, v: Any) -> tuple:
    """An int or a pair of positive ints as ``(h, w)`` (see :func:`_int_pair`)."""
    pair = _int_pair(v, name, op)
    if 0 in pair:
        raise ValueError(f"{op}: {name} must be at least 1, got {v!r}")
    return pair


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout: in training, zero each element with probability ``p``
    and scale the others by ``1/(1-p)``; identity otherwise. Masks come from
    the generator seeded by ``cnnrs.manual_seed``.

    Raises:
        ValueError: ``p`` outside [0, 1].
    """
    return Tensor._wrap(_native.dropout(_t(input)._v, _check_p("dropout", p), bool(training)))


def dropout2d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Spatial dropout: zero whole ``(n, c)`` feature maps of ``(N, C, H, W)``
    input with probability ``p``, scale the others by ``1/(1-p)``.

    Raises:
        ValueError: ``p`` outside [0, 1], or input of rank < 3.
    """
    return Tensor._wrap(_native.dropout2d(_t(input)._v, _check_p("dropout2d", p),
                                          bool(training)))


def cutout(input: Any, size: int, training: bool = True) -> Tensor:
    """Cutout (DeVries & Taylor 2017): per image of ``(N, C, H, W)`` input,
    zero one ``size x size`` square centred at a uniformly drawn pixel
    (clipped at the borders) in every channel. Identity when not training.

    Raises:
        ValueError: non-4-D input or ``size < 1``.
    """
    return Tensor._wrap(_native.cutout(_t(input)._v, _pos_int("cutout", "size", size),
                                       bool(training)))


def max_pool_dropout2d(input: Any, kernel_size, stride=None, p: float = 0.5,
                       training: bool = True, eval_mode: str = "weighted") -> Tensor:
    """Max-pooling dropout (Wu & Gu 2015); see :class:`cnnrs.nn.MaxPoolDropout2d`.

    Shape: ``(N, C, H, W)`` -> ``(N, C, (H - kH)//sH + 1, (W - kW)//sW + 1)``.

    Raises:
        ValueError: bad ``p``, kernel or stride, non-4-D input, kernel larger
            than the input, unknown ``eval_mode``.
    """
    op = "max_pool_dropout2d"
    k = _pair(op, "kernel_size", kernel_size)
    s = k if stride is None else _pair(op, "stride", stride)
    if eval_mode not in ("weighted", "max"):
        raise ValueError(f"{op}: eval_mode must be 'weighted' or 'max', got {eval_mode!r}")
    return Tensor._wrap(_native.max_pool_dropout(_t(input)._v, k, s, _check_p(op, p),
                                                 bool(training), eval_mode == "weighted"))


def locally_connected2d(input: Any, weight: Any, bias: Optional[Any] = None, stride=1,
                        padding=0) -> Tensor:
    """A convolution without weight sharing: each output position has its own
    filters (Keras' ``LocallyConnected2D``; not in PyTorch).

    Args:
        input: ``(N, C_in, H, W)``.
        weight: ``(H_out, W_out, C_out, C_in, kH, kW)``.
        bias: optional ``(C_out, H_out, W_out)``.
        stride, padding: int or pair (zero padding).

    Shape: ``H_out = (H + 2*padding - kH) // stride + 1`` (same for W); the
    output is ``(N, C_out, H_out, W_out)``.

    Raises:
        ValueError: rank, channel or output-size mismatch between input and
            weight, bad bias shape, non-positive stride, negative padding.
    """
    op = "locally_connected2d"
    s = _pair(op, "stride", stride)
    p = _int_pair(padding, "padding", op)
    b = None if bias is None else _t(bias)._v
    return Tensor._wrap(_native.locally_connected2d(_t(input)._v, _t(weight)._v, b, s, p))


def relu(input: Any, inplace: bool = False) -> Tensor:
    """Rectified linear unit, ``max(x, 0)`` elementwise.

    Args:
        input: any shape.
        inplace: accepted for PyTorch compatibility; cnnrs always returns a
            new tensor.

    Example:
        >>> F.relu(cnnrs.tensor([-1.0, 2.0])).numpy()
        array([0., 2.], dtype=float32)
    """
    return Tensor._wrap(_native.relu(_t(input)._v))


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Flattens dims ``start_dim..end_dim`` (inclusive) into one."""
    return Tensor._wrap(_native.flatten(_t(input)._v, start_dim, end_dim))


# --- convolution ------------------------------------------------------------

_INT64_MAX = 2**63 - 1


def _conv_int(value: Any, op: str, name: str) -> int:
    """``value`` as a Python int; bools and non-integers raise TypeError.
    Range checks (negative, zero) are the core's, so they raise ValueError."""
    if type(value) is int and -_INT64_MAX <= value <= _INT64_MAX:  # the common case, fast
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} ({value!r})")
    v = int(value)
    if abs(v) > _INT64_MAX:
        raise ValueError(f"{op}: {name} {v} is out of range")
    return v


def _conv_pair(value: Any, op: str, name: str) -> tuple[int, int]:
    """An int or a pair of ints (tuple or list) as a pair, PyTorch's ``_pair``."""
    if type(value) is int and 0 <= value <= _INT64_MAX:  # the common case, fast
        return (value, value)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{op}: {name} must be an int or a pair of ints, got {len(value)} values "
                f"{tuple(value)!r}"
            )
        return (_conv_int(value[0], op, name), _conv_int(value[1], op, name))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{op}: {name} must be an int or a pair of ints, got {type(value).__name__} "
            f"({value!r})"
        )
    v = _conv_int(value, op, name)
    return (v, v)


def _conv_padding(value: Any, op: str) -> str | tuple[int, int, int, int]:
    """``'same'``/``'valid'`` as is; an int or pair as ``(top, bottom, left, right)``."""
    if isinstance(value, str):
        return value
    ph, pw = _conv_pair(value, op, "padding")
    return (ph, ph, pw, pw)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) over a batch of images, as
    ``torch.nn.functional.conv2d``.

    Args:
        input: ``(N, C_in, H, W)``, or ``(C_in, H, W)`` for one unbatched image.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``. Default: None.
        stride: int or ``(sH, sW)``, at least 1. Default: 1.
        padding: int or ``(pH, pW)`` zeros on both sides of each dimension, or
            ``'valid'`` (no padding) or ``'same'`` (output as large as the input;
            stride 1 only; an odd total puts the extra row/column at the
            bottom/right, as PyTorch). Default: 0.
        dilation: int or ``(dH, dW)``, spacing of the kernel taps, at least 1.
            Default: 1.
        groups: splits the channels into this many independent groups; must
            divide ``C_in`` and ``C_out`` (``groups == C_in`` is a depthwise
            convolution). Default: 1.

    Shape:
        - input ``(N, C_in, H, W)``, output ``(N, C_out, H_out, W_out)`` with
          ``H_out = (H + 2*pH - dH*(kH - 1) - 1) // sH + 1`` and
          ``W_out = (W + 2*pW - dW*(kW - 1) - 1) // sW + 1``.

    Raises:
        TypeError: a bool or non-integer stride, padding, dilation or groups.
        ValueError: shapes that do not agree (channels, groups, bias length,
            kernel larger than the padded input, rank), negative or zero
            stride/dilation/groups, negative padding, an unknown padding
            string, ``'same'`` with a stride above 1.

    Example:
        >>> x = cnnrs.randn(8, 3, 32, 32)
        >>> w = cnnrs.randn(16, 3, 3, 3)
        >>> F.conv2d(x, w, padding=1).shape
        (8, 16, 32, 32)
    """
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, False)


def conv2d_relu(input: Any, weight: Any, bias: Any = None, stride=1, padding=0, dilation=1,
                groups: int = 1) -> Tensor:
    """``relu(conv2d(...))`` in one kernel: the ReLU is applied while the
    output tile is in registers, and backward masks the gradient with the
    saved output. Same arguments, shapes and errors as :func:`conv2d`. Not in
    PyTorch; ``nn.Sequential`` uses it for a ``Conv2d`` followed by ``ReLU``.
    """
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, True)


def _conv2d(input, weight, bias, stride, padding, dilation, groups, relu: bool) -> Tensor:
    op = "conv2d"
    stride_ = _conv_pair(stride, op, "stride")
    padding_ = _conv_padding(padding, op)
    dilation_ = _conv_pair(dilation, op, "dilation")
    groups_ = _conv_int(groups, op, "groups")
    x = _t(input)
    w = _t(weight)
    b = None if bias is None else _t(bias)._v
    if x.ndim not in (3, 4):
        raise ValueError(
            f"conv2d: expected a 3-D (C_in, H, W) or 4-D (N, C_in, H, W) input but got "
            f"shape {x.shape}"
        )
    unbatched = x.ndim == 3
    if unbatched:
        x = x.reshape(1, *x.shape)
    y = Tensor._wrap(
        _native.conv2d(x._v, w._v, b, stride_, padding_, dilation_, groups_, relu)
    )
    return y.reshape(y.shape[1:]) if unbatched else y


__all__ += ["conv2d", "conv2d_relu"]


# --- transposed convolution -------------------------------------------------------


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """2-D transposed convolution ("deconvolution"), as
    ``torch.nn.functional.conv_transpose2d``: the adjoint (gradient) of
    :func:`conv2d` with the same weight, stride, padding, dilation and groups.

    Args:
        input: ``(N, C_in, H, W)``, or ``(C_in, H, W)`` for one unbatched image.
        weight: ``(C_in, C_out / groups, kH, kW)`` (PyTorch's layout: input
            channels first).
        bias: optional ``(C_out,)``. Default: None.
        stride: int or ``(sH, sW)``, at least 1. Default: 1.
        padding: int or ``(pH, pW)``: ``dilation * (k - 1) - padding`` zeros are
            implicitly added on both sides of the input, i.e. ``padding`` rows
            and columns are removed from each side of the full output.
            Default: 0.
        output_padding: int or ``(opH, opW)`` extra rows/columns added to the
            bottom/right of the output (to pick among the input sizes a strided
            conv2d maps to the same size); each must be smaller than the stride
            or the dilation of its axis. Default: 0.
        groups: splits the channels into independent groups; must divide
            ``C_in``. Default: 1.
        dilation: int or ``(dH, dW)``, spacing of the kernel taps. Default: 1.

    Shape:
        - input ``(N, C_in, H, W)``, output ``(N, C_out, H_out, W_out)`` with
          ``H_out = (H - 1)*sH - 2*pH + dH*(kH - 1) + opH + 1`` and
          ``W_out = (W - 1)*sW - 2*pW + dW*(kW - 1) + opW + 1``;
          ``C_out = weight.shape[1] * groups``.

    Raises:
        TypeError: a bool or non-integer stride, padding, output_padding,
            dilation or groups.
        ValueError: shapes that do not agree (input channels vs weight dim 0,
            groups, bias length, rank), non-positive stride/dilation/groups,
            negative padding/output_padding, output_padding not smaller than
            the stride or the dilation, an output size below 1.

    Example:
        >>> x = cnnrs.randn(1, 64, 28, 28)
        >>> w = cnnrs.randn(64, 32, 2, 2)
        >>> F.conv_transpose2d(x, w, stride=2).shape
        (1, 32, 56, 56)
    """
    op = "conv_transpose2d"
    stride_ = _conv_pair(stride, op, "stride")
    padding_ = _conv_pair(padding, op, "padding")
    output_padding_ = _conv_pair(output_padding, op, "output_padding")
    dilation_ = _conv_pair(dilation, op, "dilation")
    groups_ = _conv_int(groups, op, "groups")
    x = _t(input)
    w = _t(weight)
    b = None if bias is None else _t(bias)._v
    if x.ndim not in (3, 4):
        raise ValueError(
            f"conv_transpose2d: expected a 3-D (C_in, H, W) or 4-D (N, C_in, H, W) input but "
            f"got shape {x.shape}"
        )
    unbatched = x.ndim == 3
    if unbatched:
        x = x.reshape(1, *x.shape)
    y = Tensor._wrap(_native.conv_transpose2d(
        x._v, w._v, b, stride_, padding_, output_padding_, dilation_, groups_))
    return y.reshape(y.shape[1:]) if unbatched else y


__all__ += ["conv_transpose2d"]


# --- upsampling ------------------------------------------------------------------

_INTERP_MODES = ("nearest", "bilinear", "bicubic")


def _interp_pair(value: Any, name: str, kind: type) -> tuple:
    """An int (``size``) or number (``scale_factor``), or a pair of them."""
    op = "interpolate"
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(
            f"{op}: {name} must be a single value or a pair (H, W) for 4-D input, got "
            f"{len(items)} values {tuple(items)!r}"
        )
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, kind):
            what = "an int" if kind is numbers.Integral else "a number"
            raise TypeError(f"{op}: {name} must be {what} or a pair of them, got {value!r}")
    if kind is numbers.Integral:
        for v in items:
            if abs(int(v)) > _INT64_MAX:
                raise ValueError(f"{op}: {name} {int(v)} is out of range")
        return tuple(int(v) for v in items)
    return tuple(float(v) for v in items)


def interpolate(
    input: Any,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    align_corners: Optional[bool] = None,
    recompute_scale_factor: Optional[bool] = None,
) -> Tensor:
    """Resizes a batch of images, as ``torch.nn.functional.interpolate``.

    Args:
        input: ``(N, C, H, W)``.
        size: output ``(H_out, W_out)`` (or one int for both). Exactly one of
            ``size`` and ``scale_factor`` must be given.
        scale_factor: multiplier of the input size (a number or a pair).
            Unless ``recompute_scale_factor`` is True, it is also the scale
            used to map output to input coordinates (``src = dst /
            scale_factor``), as in PyTorch.
        mode: ``'nearest'`` (PyTorch's legacy nearest: ``src = floor(dst *
            in/out)``), ``'bilinear'`` or ``'bicubic'`` (Keys' cubic
            convolution with ``A = -0.75``; the taps beyond the border are
            clamped to the edge pixels). Default: ``'nearest'``.
        align_corners: for bilinear/bicubic: if True, the corner pixels of
            input and output are aligned (``src = dst * (in - 1)/(out - 1)``);
            if False (default), pixel centres are (``src = (dst + 0.5) *
            in/out - 0.5``). Must be None for nearest.
        recompute_scale_factor: if True, compute the output size from
            ``scale_factor`` and then map coordinates with ``in/out``.

    Shape:
        - input ``(N, C, H, W)``, output ``(N, C, H_out, W_out)`` with
          ``H_out = size[0]`` or ``floor(H * scale_factor[0])`` (same for W).

    Raises:
        TypeError: a non-int size, a non-number scale factor, a non-str mode
            or a non-bool align_corners.
        ValueError: both or neither of ``size`` and ``scale_factor``,
            ``align_corners`` with ``'nearest'``, an unknown mode, a non-4-D
            or empty input, non-positive sizes or scale factors, an output
            size of 0.

    Example:
        >>> x = cnnrs.randn(1, 3, 16, 16)
        >>> F.interpolate(x, scale_factor=2, mode="bilinear").shape
        (1, 3, 32, 32)

    Differences from PyTorch: 4-D input only (no 3-D/5-D ``linear``/
    ``trilinear``), no ``'area'``/``'nearest-exact'`` modes, no
    ``antialias``.
    """
    op = "interpolate"
    if not isinstance(mode, str):
        raise TypeError(f"{op}: mode must be a str, got {type(mode).__name__}")
    if mode not in _INTERP_MODES:
        raise ValueError(
            f"{op}: mode must be 'nearest', 'bilinear' or 'bicubic' for 4-D input, got {mode!r}"
        )
    for name, flag in (("align_corners", align_corners),
                       ("recompute_scale_factor", recompute_scale_factor)):
        if flag is not None and not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: {name} must be a bool or None, got {type(flag).__name__}")
    size_ = None if size is None else _interp_pair(size, "size", numbers.Integral)
    scale_ = (None if scale_factor is None
              else _interp_pair(scale_factor, "scale_factor", numbers.Real))
    return Tensor._wrap(_native.interpolate(
        _t(input)._v, size_, scale_, mode,
        None if align_corners is None else bool(align_corners),
        None if recompute_scale_factor is None else bool(recompute_scale_factor)))


__all__ += ["interpolate"]


# --- padding and cropping -----------------------------------------------------------

_PAD_MODES = ("constant", "reflect", "replicate")


def pad(input: Any, pad: Sequence[int], mode: str = "constant",
        value: Optional[float] = None) -> Tensor:
    """Pads the last one or two dimensions, as ``torch.nn.functional.pad``.

    Args:
        input: a tensor with at least ``len(pad) // 2`` dimensions.
        pad: ``(left, right)`` for the last dimension, or ``(left, right, top,
            bottom)`` for the last two (last dimension first, as PyTorch). In
            ``'constant'`` mode a negative value removes that many elements.
        mode: ``'constant'`` (fill with ``value``), ``'reflect'`` (mirror
            without repeating the edge; each pad smaller than its dimension)
            or ``'replicate'`` (repeat the edge). Default: ``'constant'``.
        value: the fill value of ``'constant'`` mode. Default: 0.

    Shape: ``W_out = W + left + right`` and ``H_out = H + top + bottom``;
    other dimensions are kept.

    Raises:
        TypeError: non-int pad values, a non-str mode, a non-number value.
        ValueError: a pad of length other than 2 or 4, too few dimensions,
            an unknown mode, ``value`` with a non-constant mode, negative pads
            outside constant mode, a negative output size, a reflect pad not
            smaller than its dimension.

    Example:
        >>> F.pad(cnnrs.ones(1, 1, 2, 2), (1, 1, 0, 2)).shape
        (1, 1, 4, 4)

    Differences from PyTorch: at most the last two dimensions; no
    ``'circular'`` mode; reflect/replicate take any input with at least two
    dimensions (PyTorch wants 3-D or 4-D).
    """
    op = "pad"
    if isinstance(pad, (str, bytes)) or not isinstance(pad, (tuple, list)):
        raise TypeError(f"{op}: pad must be a tuple or list of ints, got {type(pad).__name__}")
    pads = [_conv_int(v, op, "pad") for v in pad]
    if not isinstance(mode, str):
        raise TypeError(f"{op}: mode must be a str, got {type(mode).__name__}")
    if mode not in _PAD_MODES:
        raise ValueError(
            f"{op}: mode must be 'constant', 'reflect' or 'replicate', got {mode!r}"
        )
    if value is not None:
        if mode != "constant":
            raise ValueError(f"{op}: padding mode {mode!r} doesn't take in value argument")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{op}: value must be a number, got {type(value).__name__}")
    fill = 0.0 if value is None else float(value)
    return Tensor._wrap(_native.pad(_t(input)._v, pads, mode, fill))


def center_crop(input: Any, size: int | tuple[int, int]) -> Tensor:
    """Crops the last two dimensions to ``size`` around the centre, as the
    original (valid-padding) U-Net crops its skip connections.

    Args:
        input: ``(..., H, W)``.
        size: ``(h, w)``, or one int for both; at most the input's size.

    Shape: ``(..., H, W)`` -> ``(..., h, w)``: rows ``top .. top + h`` with
    ``top = (H - h) // 2`` (an odd margin leaves the extra row at the
    bottom), columns likewise. The gradient is padded back with zeros.

    Raises:
        TypeError: non-int sizes.
        ValueError: a non-positive size, a size larger than the input, fewer
            than two dimensions.

    Example:
        >>> F.center_crop(cnnrs.randn(1, 64, 64, 64), 56).shape
        (1, 64, 56, 56)

    Differences from torchvision's ``center_crop``: the offset is floored
    (torchvision rounds it, which differs for odd margins), and a size larger
    than the input is an error instead of zero padding.
    """
    op = "center_crop"
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"{op}: size must be an int or a pair (h, w), got {tuple(size)!r}")
        h, w = (_conv_int(v, op, "size") for v in size)
    else:
        h = w = _conv_int(size, op, "size")
    return Tensor._wrap(_native.center_crop(_t(input)._v, (h, w)))


__all__ += ["pad", "center_crop"]



# --- pooling ------------------------------------------------------------------
__all__ += ["max_pool2d"]


def _int_pair(value: Any, name: str, op: str) -> tuple:
    """``value`` (an int, or a sequence of one or two ints) as ``(h, w)``.

    Raises TypeError for non-integers (bool included) and ValueError for
    negative or absurdly large values, naming ``op`` and ``name``."""
    if type(value) is int and 0 <= value <= sys.maxsize:  # the common case, fast
        return (value, value)
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(items) == 1:
        items = items * 2
    if len(items) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in items:
        if type(v) is int and 0 <= v <= sys.maxsize:
            out.append(v)
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
        if v < 0:
            raise ValueError(f"{op}: {name} must be non-negative, got {value!r}")
        if v > sys.maxsize:
            raise ValueError(f"{op}: {name} is too large, got {value!r}")
        out.append(int(v))
    return tuple(out)


def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False):
    """2-D max pooling over an NCHW batch, as ``torch.nn.functional.max_pool2d``.

    Args:
        input: ``(N, C, H, W)`` tensor or array.
        kernel_size: window size, an int or ``(kH, kW)``.
        stride: window step, an int or a pair; default (None): ``kernel_size``.
        padding: implicit -inf padding on each side, an int or a pair; at most
            half the kernel size.
        dilation: spacing between window taps, an int or a pair. Default 1.
        ceil_mode: round the output size up instead of down (a last window
            that would start in the right padding is still dropped).
        return_indices: also return, per output element, the flat index
            ``h * W + w`` inside its ``(H, W)`` input plane of the element
            chosen, as a numpy ``int64`` array (cnnrs tensors are float32
            only, so this is not a Tensor). A window that covers only padding
            gives -inf and index -1 (PyTorch gives an arbitrary index there).

    Shape:
        Input ``(N, C, H_in, W_in)``, output ``(N, C, H_out, W_out)`` with
        ``H_out = floor((H_in + 2*padding[0] - dilation[0]*(kernel_size[0]-1) - 1)
        / stride[0]) + 1`` (``ceil`` in ceil mode), likewise ``W_out``.

    Returns:
        The pooled Tensor, or ``(Tensor, np.ndarray)`` with ``return_indices``.
        Ties pick the first maximal element in row-major window order; a NaN
        in a window wins (the output is NaN), as in PyTorch. The gradient
        flows to the chosen element (summed where windows overlap).

    Raises:
        ValueError: input not 4-D (PyTorch also takes unbatched 3-D input;
            cnnrs does not), kernel_size/stride/dilation of 0, negative
            values, padding over half the kernel, or an output smaller than
            1x1.
        TypeError: non-integer sizes.

    Example:
        >>> x = cnnrs.randn(8, 3, 32, 32)
        >>> F.max_pool2d(x, 2).shape
        (8, 3, 16, 16)
        >>> y, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    """
    op = "max_pool2d"
    k = _int_pair(kernel_size, "kernel_size", op)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = _int_pair(stride, "stride", op)
    p = _int_pair(padding, "padding", op)
    d = _int_pair(dilation, "dilation", op)
    y, idx = _native.max_pool2d(_t(input)._v, k, s, p, d, bool(ceil_mode), bool(return_indices))
    out = Tensor._wrap(y)
    return (out, idx) if return_indices else out


def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> Tensor:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Args:
        input: ``(N, C, H, W)``.
        kernel_size, stride (default ``kernel_size``), padding: ints or pairs;
            zero padding of at most half the kernel.
        ceil_mode: round the output size up.
        count_include_pad: count the zero padding in the divisor.
        divisor_override: divide by this instead.

    Shape: ``H_out = floor((H + 2*padding - kernel_size) / stride) + 1``
    (``ceil`` in ceil mode).

    Raises:
        ValueError: non-4-D input, zero kernel/stride, padding over half the
            kernel, output smaller than 1x1, ``divisor_override=0``.
        TypeError: non-integer sizes.
    """
    op = "avg_pool2d"
    k = _int_pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _int_pair(stride, "stride", op)
    p = _int_pair(padding, "padding", op)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int):
            raise TypeError(f"{op}: divisor_override must be an int")
        if divisor_override < 1:
            raise ValueError(f"{op}: divisor_override must be non-zero and positive, "
                             f"got {divisor_override}")
    return Tensor._wrap(_native.avg_pool2d(_t(input)._v, k, s, p, bool(ceil_mode),
                                           bool(count_include_pad), divisor_override))


def adaptive_avg_pool2d(input: Any, output_size: Any) -> Tensor:
    """Adaptive average pooling to ``output_size`` (an int or ``(H_out, W_out)``;
    ``None`` in a pair keeps that input dim). Cell ``o`` of a dim of length
    ``L`` averages ``[floor(o*L/out), ceil((o+1)*L/out))``; ``output_size=1``
    is global average pooling.

    Raises:
        ValueError: non-4-D input, non-positive output size.
    """
    op = "adaptive_avg_pool2d"
    x = _t(input)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and x.ndim == 4:
        output_size = tuple(x.shape[2 + i] if v is None else v for i, v in enumerate(output_size))
    o = _int_pair(output_size, "output_size", op)
    return Tensor._wrap(_native.adaptive_avg_pool2d(x._v, o))


__all__ += ["avg_pool2d", "adaptive_avg_pool2d"]


# --- linear -------------------------------------------------------------------
__all__ += ["linear"]


def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """Affine map ``y = x W^T + b``, as ``torch.nn.functional.linear``.

    Args:
        input: ``(*, in_features)``; any leading dims (none for a 1-D input).
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or None.

    Shape:
        Input ``(*, H_in)`` with ``H_in = in_features``, output ``(*, H_out)``
        with ``H_out = out_features``.

    Raises:
        ValueError: a 0-d input, a weight that is not 2-D, an input whose last
            dim is not ``in_features``, or a bias that is not
            ``(out_features,)``; the message names every shape.

    Example:
        >>> x, w, b = cnnrs.randn(4, 3), cnnrs.randn(2, 3), cnnrs.randn(2)
        >>> F.linear(x, w, b).shape
        (4, 2)
    """
    b = None if bias is None else _t(bias)._v
    return Tensor._wrap(_native.linear(_t(input)._v, _t(weight)._v, b))


# --- softmax and losses -------------------------------------------------------
__all__ += ["softmax", "log_softmax", "cross_entropy", "mse_loss",
            "binary_cross_entropy_with_logits", "dice_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: Any, op: str) -> str:
    if not isinstance(reduction, str):
        raise TypeError(
            f"{op}: reduction must be a str ('mean', 'sum' or 'none'), got "
            f"{type(reduction).__name__}; pass it by keyword (reduction=...)"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got '{reduction}'")
    return reduction


def _class_labels(target: Any, op: str) -> np.ndarray:
    """Integer class labels as a contiguous int64 array.

    Integer arrays, lists and numbers are taken as they are; float arrays and
    Tensors are accepted when every value is an integer. Anything else (bool,
    str, object, non-integral floats) raises TypeError."""
    if isinstance(target, Tensor):
        arr = target.numpy()
    else:
        try:
            arr = np.asarray(target)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{op}: target must hold integer class labels, got "
                            f"{type(target).__name__}: {e}") from e
    kind = arr.dtype.kind
    if kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{op}: target label {int(arr.max())} is out of range")
    if kind in "iu":
        return np.asarray(arr, dtype=np.int64, order="C")
    if kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise TypeError(
                f"{op}: target must hold integer class labels, got {arr.dtype} values that "
                f"are not integers (e.g. {arr[bad].flat[0]!r})"
            )
        if arr.size and float(np.abs(arr).max()) >= 2.0**62:
            raise ValueError(f"{op}: target label {float(np.abs(arr).max())!r} is out of range")
        return np.asarray(arr, dtype=np.int64, order="C")
    raise TypeError(
        f"{op}: target must hold integer class labels (ints, or floats with integral values), "
        f"got dtype {arr.dtype}"
    )


def softmax(input: Any, dim: int) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``, computed stably (max subtracted).

    Args:
        input: any shape.
        dim: the dim to normalise (negative counts from the end). Required:
            PyTorch's implicit choice when it is omitted is deprecated.

    Shape:
        Output has the input's shape; slices along ``dim`` sum to 1.

    Raises:
        ValueError: ``dim`` out of range.
        TypeError: ``dim`` not an int.

    Example:
        >>> F.softmax(cnnrs.tensor([[1.0, 1.0]]), dim=1).numpy()
        array([[0.5, 0.5]], dtype=float32)
    """
    return Tensor._wrap(_native.softmax(_t(input)._v, _int(dim, "softmax")))


def log_softmax(input: Any, dim: int) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``, computed stably.

    Args:
        input: any shape.
        dim: the dim to normalise (negative counts from the end).

    Shape:
        Output has the input's shape.

    Raises:
        ValueError: ``dim`` out of range.
        TypeError: ``dim`` not an int.

    Example:
        >>> F.log_softmax(cnnrs.tensor([0.0, 0.0]), dim=0).numpy()
        array([-0.6931472, -0.6931472], dtype=float32)
    """
    return Tensor._wrap(_native.log_softmax(_t(input)._v, _int(dim, "log_softmax")))


def cross_entropy(input: Any, target: Any, reduction: str = "mean",
                  ignore_index: int = -100, *, pixel_weight: Any = None) -> Tensor:
    """Cross-entropy between logits and integer class labels (log-softmax over
    the class dim fused with the negative log-likelihood).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, d2, ...)`` (e.g. per-pixel
            segmentation logits ``(N, C, H, W)``), or unbatched ``(C,)``.
        target: class labels in ``[0, C)``: ``(N,)``, ``(N, d1, d2, ...)``,
            or ``()``; an int array, a list of ints, or a Tensor/float array
            whose values are integers (converted to int64).
        reduction: ``'mean'`` (over the labels not equal to
            ``ignore_index``; NaN if there are none), ``'sum'`` or ``'none'``
            (per-label losses, shaped like ``target``).
        ignore_index: labels equal to it contribute no loss and no gradient.
        pixel_weight: optional per-label weights shaped like ``target``
            (finite, >= 0; a constant, it gets no gradient), e.g. the U-Net
            paper's weight map (:func:`cnnrs.data.unet_weight_map`). Each
            label's loss is multiplied by its weight, and ``'mean'`` divides
            the weighted sum by the sum of the weights of the labels not
            equal to ``ignore_index`` (PyTorch's convention for its
            per-class ``weight``; NaN when that sum is 0), so all-ones
            weights give the unweighted loss. Keyword-only; not in PyTorch.

    Shape:
        Input ``(N, C, *)``, target ``(N, *)``; output ``()`` for ``'mean'``
        and ``'sum'``, ``(N, *)`` for ``'none'``.

    Raises:
        ValueError: a label outside ``[0, C)`` (not ``ignore_index``), a
            target shape that does not match the input, a 0-d input, an
            unknown reduction, a ``pixel_weight`` not shaped like the target
            or holding negative or non-finite values.
        TypeError: bool/str/object labels, float labels that are not
            integers, or a non-str reduction.

    Differences from PyTorch: no ``weight`` or ``label_smoothing``, and no
    class-probability targets; the third positional argument is
    ``reduction`` (PyTorch's is ``weight``), so pass options by keyword.

    Example:
        >>> logits = cnnrs.randn(4, 10).requires_grad_()
        >>> loss = F.cross_entropy(logits, [1, 0, 9, 3])
        >>> loss.backward()
    """
    op = "cross_entropy"
    red = _check_reduction(reduction, op)
    labels = _class_labels(target, op)
    ign = _int(ignore_index, op)
    w = None if pixel_weight is None else _t(pixel_weight)._v
    return Tensor._wrap(_native.cross_entropy(_t(input)._v, labels, red, ign, w))


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)^2``, reduced.

    Args:
        input: any shape.
        target: the same shape as ``input`` (it may require grad too).
        reduction: ``'mean'`` (NaN for empty inputs), ``'sum'`` or
            ``'none'``.

    Shape:
        Output ``()`` for ``'mean'``/``'sum'``, the input's shape for
        ``'none'``.

    Raises:
        ValueError: shapes differ (PyTorch broadcasts with a warning; cnnrs
            refuses, since that is almost always a bug), or an unknown
            reduction.
        TypeError: a non-str reduction.

    Example:
        >>> F.mse_loss(cnnrs.tensor([1.0, 2.0]), cnnrs.tensor([1.0, 4.0])).item()
        2.0
    """
    red = _check_reduction(reduction, "mse_loss")
    return Tensor._wrap(_native.mse_loss(_t(input)._v, _t(target)._v, red))


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None, *,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """Sigmoid and binary cross-entropy in one numerically stable op, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element, with ``p = pos_weight`` and ``w = weight`` (default 1):
    ``l = -w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``,
    computed as ``w * ((1 - y) * x + (1 + (p - 1) * y) * softplus(-x))`` so
    large logits neither overflow nor lose precision.

    Args:
        input: logits, any shape.
        target: the same shape as ``input``, usually in [0, 1] (soft labels
            allowed; it may require grad).
        weight: optional rescaling weight that broadcasts to the input's
            shape (a constant).
        reduction: ``'mean'`` (over all elements; the weights do not enter
            the divisor), ``'sum'`` or ``'none'``. Keyword-only.
        pos_weight: optional weight of the positive term, broadcasting to the
            input's shape (e.g. ``(C, 1, 1)`` for per-channel weights of an
            ``(N, C, H, W)`` input, or ``(C,)`` for ``(N, C)``): values above
            1 raise recall. Keyword-only.

    Shape:
        Input and target ``(*)``; output ``()`` for ``'mean'``/``'sum'``, the
        input's shape for ``'none'``.

    Raises:
        ValueError: target shape differs from the input's, a weight or
            pos_weight that does not broadcast to it, an unknown reduction.
        TypeError: a non-str reduction.

    Example:
        >>> logits = cnnrs.randn(2, 1, 8, 8).requires_grad_()
        >>> mask = (np.random.rand(2, 1, 8, 8) > 0.5).astype(np.float32)
        >>> F.binary_cross_entropy_with_logits(logits, mask).backward()

    Differences from PyTorch: no deprecated ``size_average``/``reduce``;
    ``reduction`` and ``pos_weight`` are keyword-only.
    """
    op = "binary_cross_entropy_with_logits"
    red = _check_reduction(reduction, op)
    w = None if weight is None else _t(weight)._v
    pw = None if pos_weight is None else _t(pos_weight)._v
    return Tensor._wrap(_native.binary_cross_entropy_with_logits(
        _t(input)._v, _t(target)._v, red, w, pw))


def dice_loss(input: Any, target: Any, *, smooth: float = 1.0, activation: str = "softmax",
              include_background: bool = True, ignore_index: int = -100,
              reduction: str = "mean") -> Tensor:
    """Soft Dice loss ``1 - (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)``
    on predicted probabilities ``p``, per sample and class (not in PyTorch's
    core; as in MONAI's ``DiceLoss`` with ``smooth_nr = smooth_dr = smooth``).

    Args:
        input: logits ``(N, C, *)`` (e.g. ``(N, C, H, W)``).
        target: with ``activation='softmax'``: integer class labels
            ``(N, *)`` (one-hot encoded inside; ``C >= 2``); with
            ``'sigmoid'``: values in [0, 1] shaped like ``input`` (a binary
            mask per channel; ``C = 1`` for one foreground class).
        smooth: added to numerator and denominator (>= 0). Default 1. With 0
            a class absent from both prediction and target gives NaN.
        activation: ``'softmax'`` over the class dim or elementwise
            ``'sigmoid'``.
        include_background: keep class 0 (softmax only); False drops it from
            the loss.
        ignore_index: labels equal to it are left out of every sum (softmax
            only).
        reduction: ``'mean'`` over the ``N * C'`` per-sample, per-class
            losses, ``'sum'``, or ``'none'`` (shape ``(N, C')``; ``C' = C``,
            or ``C - 1`` without the background).

    Shape:
        Input ``(N, C, *)``; output ``()``, or ``(N, C')`` for ``'none'``.

    Raises:
        ValueError: an unknown activation or reduction, a target that does
            not fit the input, labels out of range, fewer than 2 classes with
            softmax, sigmoid targets outside [0, 1], a negative smooth,
            ``include_background=False`` with sigmoid.
        TypeError: non-integral labels, non-str options.

    Example:
        >>> logits = cnnrs.randn(2, 3, 16, 16).requires_grad_()
        >>> labels = np.random.randint(0, 3, (2, 16, 16))
        >>> F.dice_loss(logits, labels).backward()
    """
    op = "dice_loss"
    red = _check_reduction(reduction, op)
    if not isinstance(activation, str) or activation not in ("softmax", "sigmoid"):
        raise ValueError(f"{op}: activation must be 'softmax' or 'sigmoid', got {activation!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, numbers.Real):
        raise TypeError(f"{op}: smooth must be a number, got {type(smooth).__name__}")
    x = _t(input)
    if activation == "softmax":
        labels = _class_labels(target, op)
        return Tensor._wrap(_native.dice_loss_labels(
            x._v, labels, float(smooth), bool(include_background), _int(ignore_index, op), red))
    if not include_background:
        raise ValueError(f"{op}: include_background=False applies to softmax with class labels "
                         "only")
    return Tensor._wrap(_native.dice_loss_probs(x._v, _t(target)._v, float(smooth), red))

"""The ops as plain functions, with PyTorch's names and argument order.

Every function accepts :class:`cnnrs.Tensor` or numpy arrays (converted to
float32) and returns a Tensor. The computation, forward and backward, runs in
Rust with the GIL released.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _native
from .._tensor import Tensor, as_tensor

__all__ = ["relu", "flatten"]


def _t(x: Any) -> Tensor:
    return as_tensor(x)


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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} ({value!r})")
    v = int(value)
    if abs(v) > _INT64_MAX:
        raise ValueError(f"{op}: {name} {v} is out of range")
    return v


def _conv_pair(value: Any, op: str, name: str) -> tuple[int, int]:
    """An int or a pair of ints (tuple or list) as a pair, PyTorch's ``_pair``."""
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
        _native.conv2d(x._v, w._v, b, stride_, padding_, dilation_, groups_)
    )
    return y.reshape(y.shape[1:]) if unbatched else y


__all__ += ["conv2d"]



# --- pooling ------------------------------------------------------------------


# --- linear -------------------------------------------------------------------


# --- softmax and losses -------------------------------------------------------

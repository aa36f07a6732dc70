"""The ops as plain functions, with PyTorch's names and argument order.

Every function accepts :class:`cnnrs.Tensor` or numpy arrays (converted to
float32) and returns a Tensor. The computation, forward and backward, runs in
Rust with the GIL released.
"""

from __future__ import annotations

from typing import Any

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


# --- pooling ------------------------------------------------------------------


# --- linear -------------------------------------------------------------------


# --- softmax and losses -------------------------------------------------------

"""The ops as plain functions, with PyTorch's names and argument order.

Every function accepts :class:`cnnrs.Tensor` or numpy arrays (converted to
float32) and returns a Tensor. The computation, forward and backward, runs in
Rust with the GIL released.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import _native
from .._tensor import Tensor, as_tensor

__all__ = ["relu", "flatten", "batch_norm"]


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

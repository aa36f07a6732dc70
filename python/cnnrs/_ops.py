"""Tensor functions that are not layers: ``cnnrs.cat``."""

from __future__ import annotations

import numbers

import numpy as np

from . import _native
from ._tensor import Tensor, as_tensor

__all__ = ["cat"]


def cat(tensors: list | tuple, dim: int = 0) -> Tensor:
    """Concatenates tensors along an existing dimension, as ``torch.cat``
    (the U-Net joins its skip connections along the channels, ``dim=1``).

    Args:
        tensors: a non-empty list or tuple of Tensors (or arrays) with the same
            number of dimensions and the same sizes except along ``dim``.
        dim: the dimension to join along; negative counts from the end.
            Default: 0.

    Shape: the sizes along ``dim`` add up; every other size is kept. The
    gradient of each input is its slice of the output's gradient.

    Raises:
        TypeError: ``tensors`` is not a list or tuple, or ``dim`` is not an int.
        ValueError: an empty list, a 0-d tensor, different ranks, sizes that
            differ outside ``dim``, ``dim`` out of range.

    Example:
        >>> a, b = cnnrs.randn(2, 64, 8, 8), cnnrs.randn(2, 32, 8, 8)
        >>> cnnrs.cat([a, b], dim=1).shape
        (2, 96, 8, 8)

    Differences from PyTorch: 1-D empty tensors are not skipped (PyTorch's
    legacy special case); they must match like any other tensor.
    """
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, (list, tuple)):
        raise TypeError(
            f"cat: tensors must be a list or tuple of Tensors, got {type(tensors).__name__}"
        )
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"cat: dim must be an int, got {type(dim).__name__}")
    return Tensor._wrap(_native.cat([as_tensor(t)._v for t in tensors], int(dim)))

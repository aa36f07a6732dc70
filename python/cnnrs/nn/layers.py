"""Parameter-free layers: ReLU, Flatten, Identity."""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["ReLU", "Flatten", "Identity"]


class ReLU(Module):
    """``max(x, 0)`` elementwise. Shape: any; output has the input's shape."""

    is_relu = True

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim``; by default keeps the batch dim.

    Shape: ``(N, *dims)`` -> ``(N, prod(dims))``.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input."""

    def forward(self, x):
        return x

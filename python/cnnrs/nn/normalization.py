"""Batch normalisation layers."""

from __future__ import annotations

import numpy as np

from .._tensor import Tensor
from . import functional as F
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _ranks: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) \
                or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive int, "
                             f"got {num_features!r}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean._v.set_value(np.zeros(self.num_features, np.float32))
            self.running_var._v.set_value(np.ones(self.num_features, np.float32))
            self._buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)

    def forward(self, x):
        if x.ndim not in self._ranks:
            ranks = " or ".join(map(str, self._ranks))
            raise ValueError(f"{type(self).__name__}: expected a {ranks}-D input, "
                             f"got shape {tuple(x.shape)}")
        use_batch = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            nbt = self._buffers["num_batches_tracked"] + 1
            self._buffers["num_batches_tracked"] = nbt
            if self.momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(nbt)
        return F.batch_norm(x, self.running_mean if self.track_running_stats else None,
                            self.running_var if self.track_running_stats else None,
                            self.weight, self.bias, use_batch, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)``, PyTorch's ``BatchNorm2d``: weight 1,
    bias 0, buffers ``running_mean``, ``running_var``, ``num_batches_tracked``.

    Args:
        num_features: C.
        eps: added to the variance (1e-5).
        momentum: running-statistics momentum (0.1); None for a cumulative average.
        affine: learnable weight and bias.
        track_running_stats: keep running statistics (used in eval mode).

    Example:
        >>> bn = nn.BatchNorm2d(16); y = bn(x)   # x: (N, 16, H, W)
    """

    _ranks = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)`` input."""

    _ranks = (2, 3)

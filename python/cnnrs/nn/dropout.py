"""The four dropouts as layers; all are the identity in eval mode (except
max-pool dropout, which pools)."""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["Dropout", "Dropout2d", "Cutout", "MaxPoolDropout2d"]


class Dropout(Module):
    """Zeroes each element with probability ``p`` in training and scales the
    rest by ``1/(1-p)``. Shape: any."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        F._check_p("Dropout", p)
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class Dropout2d(Module):
    """Spatial dropout: zeroes whole channels of ``(N, C, H, W)`` input with
    probability ``p`` in training, scaling the rest by ``1/(1-p)``."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        F._check_p("Dropout2d", p)
        self.p = p

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class Cutout(Module):
    """Cutout (DeVries & Taylor 2017): in training, one ``size x size`` square
    per image, centred at a random pixel and clipped at the borders, is set to
    zero in every channel. Not part of PyTorch."""

    def __init__(self, size: int):
        super().__init__()
        self.size = F._pos_int("Cutout", "size", size)

    def forward(self, x):
        return F.cutout(x, self.size, self.training)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class MaxPoolDropout2d(Module):
    """Max-pooling dropout (Wu & Gu 2015). Not part of PyTorch.

    Training: each input unit is kept with probability ``1 - p`` before the
    max of every pooling window (dropped units count as 0, which suits the
    non-negative activations after ReLU). Eval: probabilistic weighted pooling
    (``eval_mode='weighted'``, the paper's choice: the expected training
    output) or plain max pooling (``eval_mode='max'``).

    Shape: ``(N, C, H, W)`` -> ``(N, C, (H - k)//s + 1, (W - k)//s + 1)``
    (no padding).
    """

    def __init__(self, kernel_size, stride=None, p: float = 0.5, eval_mode: str = "weighted"):
        super().__init__()
        F._check_p("MaxPoolDropout2d", p)
        if eval_mode not in ("weighted", "max"):
            raise ValueError(f"MaxPoolDropout2d: eval_mode must be 'weighted' or 'max', "
                             f"got {eval_mode!r}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.p = p
        self.eval_mode = eval_mode

    def forward(self, x):
        return F.max_pool_dropout2d(x, self.kernel_size, self.stride, self.p, self.training,
                                    self.eval_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, p={self.p}, "
                f"eval_mode={self.eval_mode!r}")

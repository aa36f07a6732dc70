"""Adam and AdamW, updated in Rust (one call per parameter group)."""

from __future__ import annotations

from typing import Iterable, Tuple

from .. import _native
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's update rule; ``weight_decay``
    is an L2 term added to the gradient.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (1e-3).
        betas: ``(beta1, beta2)`` (0.9, 0.999).
        eps: added to the denominator (1e-8).
        weight_decay: L2 penalty (0).
        amsgrad: use the running maximum of the second moment (False).

    Raises:
        ValueError: negative lr/eps/weight_decay, betas outside [0, 1).

    Example:
        >>> opt = cnnrs.optim.Adam(model.parameters(), lr=1e-3)
    """

    _decoupled = False

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        name = type(self).__name__
        if not 0.0 <= lr:
            raise ValueError(f"{name}: invalid lr: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"{name}: invalid eps: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {b}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"{name}: invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))
        self._native = [_native.Adam([p._v for p in g["params"]]) for g in self.param_groups]

    def step(self, closure=None):
        """Updates every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for g, opt in zip(self.param_groups, self._native):
            b1, b2 = g["betas"]
            opt.step(float(g["lr"]), float(b1), float(b2), float(g["eps"]),
                     float(g["weight_decay"]), self._decoupled, bool(g["amsgrad"]))
        return loss


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): decoupled weight decay,
    ``p *= 1 - lr * weight_decay`` before the Adam step. Default
    ``weight_decay=1e-2`` as in PyTorch."""

    _decoupled = True

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

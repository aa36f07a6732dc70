"""SGD with momentum, dampening, weight decay and Nesterov momentum."""

from __future__ import annotations

from typing import Iterable

from .. import _native
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update rule; the update of all
    parameters of a group is one call into Rust.

    Args:
        params: an iterable of parameters, or of dicts (parameter groups).
        lr: learning rate (default 1e-3, as PyTorch).
        momentum: momentum factor (default 0).
        dampening: dampening for momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: Nesterov momentum (default False).

    Raises:
        ValueError: for negative lr/momentum/weight_decay, or Nesterov without
            momentum or with dampening.

    Example:
        >>> opt = cnnrs.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not v >= 0.0:
                raise ValueError(f"SGD: invalid {name}: {v}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        self._native = [_native.Sgd([p._v for p in g["params"]]) for g in self.param_groups]

    def step(self, closure=None):
        """Updates every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for g, opt in zip(self.param_groups, self._native):
            opt.step(float(g["lr"]), float(g["momentum"]), float(g["dampening"]),
                     float(g["weight_decay"]), bool(g["nesterov"]))
        return loss

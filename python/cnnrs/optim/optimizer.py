"""Optimizer base: parameter groups as in PyTorch (a list of dicts whose
hyper-parameters may be edited between steps, e.g. by LR schedules)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List

from .._tensor import Tensor

__all__ = ["Optimizer"]


class Optimizer:
    """Holds ``param_groups``; subclasses implement ``step``."""

    def __init__(self, params: Iterable, defaults: Dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: List[Dict[str, Any]] = []
        for g in groups:
            g = dict(g)
            g["params"] = list(g["params"])
            for i, p in enumerate(g["params"]):
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: parameter {i} is "
                                    f"{type(p).__name__}, not a cnnrs Tensor")
                if not p.is_leaf:
                    raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor")
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            self.param_groups.append(g)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the gradients of all parameters."""
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"

"""Learning-rate schedules with PyTorch's names and closed forms. Call
``step()`` once per epoch (``StepLR``, ``CosineAnnealingLR``) or once per
batch (``OneCycleLR``), after ``optimizer.step()``."""

from __future__ import annotations

import math
from typing import List, Optional

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "CosineAnnealingLR", "OneCycleLR"]


class LRScheduler:
    """Base: sets each group's ``lr`` to ``get_lr()`` at every ``step()``."""

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs: List[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> List[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_last_lr(self) -> List[float]:
        return list(self._last_lr)

    def step(self) -> None:
        self.last_epoch += 1
        lrs = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = lrs

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be at least 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= epoch)``."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = sum(1 for m in self.milestones if m <= self.last_epoch)
        return [b * self.gamma ** k for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``
    (the closed form; PyTorch's recursive form gives the same values)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be at least 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t = min(self.last_epoch, self.T_max)
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The one-cycle policy (Smith & Topin 2019), PyTorch's defaults: cosine
    warm-up from ``max_lr/div_factor`` to ``max_lr`` over ``pct_start`` of
    the steps, then cosine annealing to ``max_lr/(div_factor*final_div_factor)``.
    Step it once per batch; ``total_steps`` or ``epochs * steps_per_epoch``.
    Momentum cycling is not done (the momentum stays as set)."""

    def __init__(self, optimizer, max_lr, total_steps: Optional[int] = None,
                 epochs: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if total_steps < 1:
            raise ValueError(f"OneCycleLR: total_steps must be at least 1, got {total_steps}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', "
                             f"got {anneal_strategy!r}")
        n = len(optimizer.param_groups)
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n
        self.total_steps = total_steps
        self.anneal = anneal_strategy
        self.phases = []
        up = float(pct_start * total_steps) - 1
        if three_phase:
            self.phases = [(up, "initial", "max"), (2 * up, "max", "initial"),
                           (total_steps - 1, "initial", "min")]
        else:
            self.phases = [(up, "initial", "max"), (total_steps - 1, "max", "min")]
        for g, m in zip(optimizer.param_groups, max_lrs):
            g["initial_lr"] = m / div_factor
            g["max_lr"] = m
            g["min_lr"] = g["initial_lr"] / final_div_factor
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step >= self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step + 1} times, more than total_steps "
                             f"= {self.total_steps}")
        out = []
        for g in self.optimizer.param_groups:
            start_step = 0.0
            lr = g["initial_lr"]
            for i, (end_step, a, b) in enumerate(self.phases):
                if step <= end_step or i == len(self.phases) - 1:
                    pct = (step - start_step) / (end_step - start_step) if end_step > start_step \
                        else 1.0
                    lr = self._anneal(g[f"{a}_lr"], g[f"{b}_lr"], pct)
                    break
                start_step = end_step
            out.append(lr)
        return out

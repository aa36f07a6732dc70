"""Weight initialisation, PyTorch's defaults (drawn from cnnrs's seeded
generator, so ``cnnrs.manual_seed`` makes them repeat)."""

from __future__ import annotations

import math

import numpy as np

from .._random import generator

__all__ = ["kaiming_uniform_bound", "uniform", "default_layer_init"]


def kaiming_uniform_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    """Bound of ``kaiming_uniform_(w, a)`` for ``fan_in``: with PyTorch's default
    ``a = sqrt(5)`` this is ``1 / sqrt(fan_in)``."""
    gain = math.sqrt(2.0 / (1 + a * a))
    return gain * math.sqrt(3.0 / fan_in) if fan_in > 0 else 0.0


def uniform(shape, bound: float) -> np.ndarray:
    """Samples ``U(-bound, bound)`` as float32."""
    return generator().uniform(-bound, bound, size=shape).astype(np.float32)


def default_layer_init(weight_shape, fan_in: int, bias: bool):
    """PyTorch's default for Conv2d and Linear: weight from
    ``kaiming_uniform_(a=sqrt(5))``, bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    Returns ``(weight, bias or None)`` as float32 arrays."""
    w = uniform(weight_shape, kaiming_uniform_bound(fan_in))
    b = None
    if bias:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        b = uniform((weight_shape[0],), bound)
    return w, b

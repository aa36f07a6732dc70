"""Weight initialisation, PyTorch's defaults (drawn from cnnrs's seeded
generator, so ``cnnrs.manual_seed`` makes them repeat)."""

from __future__ import annotations

import math

import numpy as np

from .._random import generator

__all__ = ["kaiming_uniform_bound", "uniform", "default_layer_init", "calculate_gain", "constant_",
           "zeros_", "ones_", "uniform_", "normal_", "kaiming_normal_", "kaiming_uniform_",
           "xavier_uniform_"]


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


# --- in-place initialisers on parameters (PyTorch's names) ------------------

def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need at least 2 dims, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param=None) -> float:
    """PyTorch's recommended gains."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid", "conv_transpose2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _set(tensor, arr):
    tensor._v.set_value(np.ascontiguousarray(arr, dtype=np.float32))
    return tensor


def constant_(tensor, value: float):
    return _set(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    return _set(tensor, generator().uniform(a, b, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    return _set(tensor, generator().normal(mean, std, size=tensor.shape))


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu"):
    """He normal init: std = gain / sqrt(fan), as ``torch.nn.init``."""
    fan_in, fan_out = _fans(tensor.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu"):
    fan_in, fan_out = _fans(tensor.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound)


def xavier_uniform_(tensor, gain: float = 1.0):
    fan_in, fan_out = _fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)

"""The package's seedable random source (weight init, shuffling, dropout
masks drawn on the Python side). ``cnnrs.manual_seed(s)`` makes runs repeat."""

from __future__ import annotations

import numpy as np

_state = {"rng": np.random.default_rng()}


def manual_seed(seed: int) -> np.random.Generator:
    """Seeds cnnrs's random generators (the Python one for initialisation and
    shuffling, and the Rust one for dropout masks); returns the Python one."""
    from . import _native

    seed = int(seed)
    _native.manual_seed(seed % (1 << 64))
    _state["rng"] = np.random.default_rng(seed)
    return _state["rng"]


def generator() -> np.random.Generator:
    """The current generator."""
    return _state["rng"]

"""The package's seedable random source (weight init, shuffling, dropout
masks drawn on the Python side). ``cnnrs.manual_seed(s)`` makes runs repeat.

``numpy.random`` is imported on first use, not at ``import cnnrs``."""

from __future__ import annotations

_state: dict = {"rng": None}


def manual_seed(seed: int):
    """Seeds cnnrs's random generators (the Python one for initialisation and
    shuffling, and the Rust one for dropout masks); returns the Python one
    (a ``numpy.random.Generator``)."""
    import numpy as np

    from . import _native

    seed = int(seed)
    _native.manual_seed(seed % (1 << 64))
    _state["rng"] = np.random.default_rng(seed)
    return _state["rng"]


def generator():
    """The current generator (``numpy.random.Generator``), created unseeded
    on first use."""
    if _state["rng"] is None:
        import numpy as np

        _state["rng"] = np.random.default_rng()
    return _state["rng"]

"""Optimizers (``cnnrs.optim``): the update runs in Rust."""

from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD"]

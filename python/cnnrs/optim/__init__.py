"""Optimizers (``cnnrs.optim``): the update runs in Rust. Learning-rate
schedules are in ``cnnrs.optim.lr_scheduler``."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]

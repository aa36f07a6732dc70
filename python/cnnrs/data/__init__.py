"""Data: the bundled digits, MNIST-format readers, batching, augmentation."""

from . import transforms
from .datasets import MNIST, FashionMNIST, TensorDataset, load_digits, read_idx
from .loader import DataLoader

__all__ = ["transforms", "load_digits", "read_idx", "TensorDataset", "MNIST", "FashionMNIST",
           "DataLoader"]

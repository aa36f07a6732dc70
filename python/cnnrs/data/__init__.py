"""Data: the bundled digits, MNIST-format readers, batching, augmentation,
and segmentation pairs (image files, the nuclei pair, synthetic cells)."""

from . import transforms
from .datasets import MNIST, FashionMNIST, TensorDataset, load_digits, read_idx
from .loader import DataLoader
from .segmentation import (
    SegmentationDataset,
    load_nuclei,
    nuclei_split,
    read_image,
    synthetic_cells,
    unet_weight_map,
)

__all__ = ["transforms", "load_digits", "read_idx", "TensorDataset", "MNIST", "FashionMNIST",
           "DataLoader", "SegmentationDataset", "synthetic_cells", "read_image", "load_nuclei",
           "nuclei_split", "unet_weight_map"]

"""Datasets: the bundled UCI digits, and readers for MNIST-format IDX files.

Nothing here downloads: ``MNIST``/``FashionMNIST`` read files the user already
has (gzipped or not).
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Callable, Optional, Tuple

import numpy as np

__all__ = ["load_digits", "read_idx", "TensorDataset", "MNIST", "FashionMNIST"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The UCI optical handwritten digits bundled with cnnrs (1,797 images).

    Returns:
        ``(images, labels)``: float32 array of shape (1797, 8, 8) with values
        0..16, and int64 labels 0..9 of shape (1797,).

    The data is CC BY 4.0 (UCI), via scikit-learn's copy; see
    ``DIGITS_LICENSE.txt`` beside this file.

    Example:
        >>> x, y = cnnrs.data.load_digits()
        >>> x.shape, y[:3]
        ((1797, 8, 8), array([0, 1, 2]))
    """
    path = os.path.join(_HERE, "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = table[:, :64].reshape(-1, 8, 8).copy()
    labels = table[:, 64].astype(np.int64)
    return images, labels


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not.

    Raises:
        ValueError: if the file is not a well-formed IDX file (bad magic,
            unknown type, or fewer bytes than the header promises).
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} has unknown IDX data type 0x{code:02x}")
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"read_idx: {path} is truncated (header)")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(dims, dtype=np.int64))
    start = 4 + 4 * ndim
    need = count * dtype.itemsize
    if len(raw) - start < need:
        raise ValueError(f"read_idx: {path} is truncated: header says {dims} "
                         f"({need} bytes) but {len(raw) - start} bytes follow")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(dims)


class TensorDataset:
    """Samples drawn from arrays of equal first dimension, as
    ``torch.utils.data.TensorDataset``. Supports integer and index-array
    access (the DataLoader fetches whole batches at once)."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: need at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        n = len(arrays[0])
        for a in arrays:
            if len(a) != n:
                raise ValueError("TensorDataset: arrays differ in length: "
                                 + ", ".join(str(len(a)) for a in arrays))
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, idx):
        return tuple(a[idx] for a in self.arrays)


def _find(root: str, names) -> str:
    for sub in ("", "raw", "MNIST/raw", "FashionMNIST/raw"):
        for name in names:
            for ext in ("", ".gz"):
                p = os.path.join(root, sub, name + ext)
                if os.path.exists(p):
                    return p
    raise FileNotFoundError(
        f"no {names[0]}[.gz] under {root!r} (looked in ., raw/, MNIST/raw/, FashionMNIST/raw/); "
        "cnnrs never downloads data: put the standard IDX files there"
    )


class MNIST:
    """MNIST-format images and labels from the standard IDX files in ``root``.

    Args:
        root: folder holding ``train-images-idx3-ubyte[.gz]``,
            ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
            ``t10k-labels-idx1-ubyte[.gz]`` (also found in ``raw/`` below it).
        train: the 60,000 training images, else the 10,000 test images.
        transform: optional function applied to each float32 (1, 28, 28)
            image in ``[0, 1]`` by ``__getitem__``.

    Attributes:
        data: uint8 array (N, 28, 28); targets: int64 array (N,).

    Raises:
        FileNotFoundError: when the files are not there (nothing is downloaded).
        ValueError: when images and labels disagree in count.
    """

    classes = [str(i) for i in range(10)]

    def __init__(self, root: str, train: bool = True,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        prefix = "train" if train else "t10k"
        self.root = root
        self.train = train
        self.transform = transform
        images = _find(root, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
        labels = _find(root, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
        self.data = read_idx(images)
        self.targets = read_idx(labels).astype(np.int64)
        if self.data.ndim != 3 or len(self.data) != len(self.targets):
            raise ValueError(f"{type(self).__name__}: images {self.data.shape} and labels "
                             f"{self.targets.shape} do not match")

    def __len__(self) -> int:
        return len(self.targets)

    def images(self) -> np.ndarray:
        """All images as float32 (N, 1, 28, 28) in [0, 1]."""
        return (self.data.astype(np.float32) / 255.0)[:, None]

    def __getitem__(self, idx):
        x = self.data[idx].astype(np.float32) / 255.0
        x = x[None] if np.ndim(idx) == 0 else x[:, None]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[idx]


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando), same IDX layout as :class:`MNIST`."""

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]

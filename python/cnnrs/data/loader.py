"""A DataLoader with PyTorch's main arguments (batch_size, shuffle, drop_last)
plus ``seed`` for a repeatable shuffle."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from .._random import generator
from .._tensor import Tensor

__all__ = ["DataLoader"]


def _to_batch(x: Any):
    """Float arrays become Tensors; integer arrays (labels) stay numpy int64,
    since cnnrs tensors are float32 only."""
    arr = np.asarray(x)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return Tensor(arr)


class DataLoader:
    """Iterates over a dataset in batches.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__``. When
            ``__getitem__`` accepts an index array (``TensorDataset``,
            ``MNIST``) whole batches are fetched at once; otherwise samples are
            fetched one by one and stacked.
        batch_size: samples per batch (default 1).
        shuffle: reshuffle at every epoch (default False).
        drop_last: drop the last incomplete batch (default False).
        seed: seed of the shuffle; None draws from ``cnnrs.manual_seed``'s
            generator. The same seed gives the same order of batches over the
            same epochs.
        transform: applied to the first element of each batch (the images),
            e.g. a :mod:`cnnrs.data.transforms` pipeline.

    Yields:
        tuples like the dataset's samples, batched: float data as
        :class:`cnnrs.Tensor`, integer data (labels) as int64 numpy arrays.

    Example:
        >>> ds = cnnrs.data.TensorDataset(x, y)
        >>> for xb, yb in cnnrs.data.DataLoader(ds, batch_size=64, shuffle=True, seed=0):
        ...     loss = F.cross_entropy(model(xb), yb)
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: Optional[int] = None, transform=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.transform = transform

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _fetch(self, idx: np.ndarray):
        try:
            sample = self.dataset[idx]
            vectorised = True
        except (TypeError, IndexError, ValueError):
            vectorised = False
        if vectorised and isinstance(sample, tuple) and len(sample) > 0 \
                and len(np.asarray(sample[0])) == len(idx):
            return tuple(_to_batch(s) for s in sample)
        items = [self.dataset[int(i)] for i in idx]
        if isinstance(items[0], tuple):
            return tuple(_to_batch(np.stack([np.asarray(it[k]) for it in items]))
                         for k in range(len(items[0])))
        return _to_batch(np.stack([np.asarray(it) for it in items]))

    def __iter__(self) -> Iterator:
        n = len(self.dataset)
        if self.shuffle:
            rng = self._rng if self._rng is not None else generator()
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            batch = self._fetch(order[start:start + self.batch_size])
            if self.transform is not None:
                if isinstance(batch, tuple):
                    batch = (self.transform(batch[0]),) + batch[1:]
                else:
                    batch = self.transform(batch)
            yield batch

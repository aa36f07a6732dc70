"""Batched, seeded data augmentation (the work runs in Rust).

Every transform takes a whole batch ``(N, C, H, W)`` — a numpy array or a
:class:`cnnrs.Tensor` — and returns a new batch of the same kind (the input
is not modified). Randomness comes from the generator seeded by
``cnnrs.manual_seed``, drawn per image.

Example:
    >>> aug = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
    ...                  T.Normalize([0.5], [0.25])])
    >>> loader = DataLoader(ds, batch_size=128, shuffle=True, transform=aug)
"""

from __future__ import annotations

import numbers
from typing import Callable, List, Sequence, Tuple, Union

import numpy as np

from .. import _native
from .._tensor import Tensor

__all__ = ["Compose", "RandomCrop", "RandomHorizontalFlip", "RandomShift", "GaussianNoise",
           "RandomRotation", "RandomScale", "RandomAffine", "Cutout", "Normalize"]


def _run(x, fn: Callable[[np.ndarray], np.ndarray]):
    is_tensor = isinstance(x, Tensor)
    arr = x.numpy() if is_tensor else np.asarray(x, dtype=np.float32)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    out = fn(arr)
    return Tensor(out) if is_tensor else out


def _size(op: str, size) -> Tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size), int(size))
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                    for v in size)):
        raise ValueError(f"{op}: size must be a positive int or a pair, got {size!r}")
    return int(size[0]), int(size[1])


def _nonneg(op: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
        raise ValueError(f"{op}: {name} must be a number >= 0, got {v!r}")
    return float(v)


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "\n".join(f"    {t!r}" for t in self.transforms)
        return f"Compose(\n{inner}\n)"


class RandomCrop:
    """Pads by ``padding`` (with ``fill``) and crops ``size`` at a random
    offset per image (the CIFAR/ResNet "pad 4, crop 32" augmentation)."""

    def __init__(self, size, padding: int = 0, fill: float = 0.0):
        self.size = _size("RandomCrop", size)
        self.padding = int(_nonneg("RandomCrop", "padding", padding))
        self.fill = float(fill)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_random_crop(a, self.size, self.padding, self.fill))

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirrors each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_hflip(a, self.p))

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomShift:
    """Shifts each image by a random integer offset of at most ``max_shift``
    pixels per axis (an int or ``(dy, dx)``), filling with ``fill``."""

    def __init__(self, max_shift, fill: float = 0.0):
        if isinstance(max_shift, numbers.Integral):
            max_shift = (max_shift, max_shift)
        self.max_shift = (int(_nonneg("RandomShift", "max_shift", max_shift[0])),
                          int(_nonneg("RandomShift", "max_shift", max_shift[1])))
        self.fill = float(fill)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_translate(a, *self.max_shift, self.fill))

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class GaussianNoise:
    """Adds N(0, std^2) noise to every value."""

    def __init__(self, std: float):
        self.std = _nonneg("GaussianNoise", "std", std)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_gaussian_noise(a, self.std))

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class RandomAffine:
    """Rotates by a random angle in ``[-degrees, degrees]`` and scales by a
    random factor in ``scale`` about the centre (bilinear, ``fill`` outside)."""

    def __init__(self, degrees: float = 0.0, scale: Tuple[float, float] = (1.0, 1.0),
                 fill: float = 0.0):
        self.degrees = _nonneg("RandomAffine", "degrees", degrees)
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"RandomAffine: scale must be (min, max) with 0 < min <= max, "
                             f"got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.fill = float(fill)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_affine(a, self.degrees, self.scale, self.fill))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(degrees={self.degrees}, scale={self.scale})"


class RandomRotation(RandomAffine):
    """Rotates by a random angle in ``[-degrees, degrees]``."""

    def __init__(self, degrees: float, fill: float = 0.0):
        super().__init__(degrees, (1.0, 1.0), fill)


class RandomScale(RandomAffine):
    """Scales about the centre by a random factor in ``[min_scale, max_scale]``."""

    def __init__(self, min_scale: float, max_scale: float, fill: float = 0.0):
        super().__init__(0.0, (min_scale, max_scale), fill)


class Cutout:
    """Zeroes one ``size x size`` square per image in every channel (DeVries &
    Taylor 2017); the layer form is :class:`cnnrs.nn.Cutout`."""

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"Cutout: size must be a positive int, got {size!r}")
        self.size = int(size)

    def __call__(self, x):
        return _run(x, lambda a: _native.t_cutout(a, self.size))

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel (one value broadcasts)."""

    def __init__(self, mean: Union[float, List[float]], std: Union[float, List[float]]):
        self.mean = [float(v) for v in np.atleast_1d(mean)]
        self.std = [float(v) for v in np.atleast_1d(std)]
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std}")

    def __call__(self, x):
        return _run(x, lambda a: _native.t_normalize(a, self.mean, self.std))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"

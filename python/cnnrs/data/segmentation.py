"""Segmentation data: image/mask pairs with joint augmentation, image files,
the nuclei microscopy pair, and a synthetic generator of cell-like blobs.

Joint augmentation (random crop, flips, quarter turns) runs in Rust
(``cnnrs._native.t_random_crop_pairs``): one set of random parameters per
sample, applied to the image and to its mask alike.
"""

from __future__ import annotations

import numbers
import os
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _native
from .._random import generator

__all__ = ["SegmentationDataset", "synthetic_cells", "read_image", "load_nuclei",
           "nuclei_split", "unet_weight_map", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_MASK_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels", "_seg")


# --- image files ---------------------------------------------------------------------------


def _read_tiff(path: str) -> np.ndarray:
    """A baseline TIFF reader for what Pillow is not needed for: the first
    image of an uncompressed, strip-organised, grey-level (or interleaved
    multi-sample) file with 8/16/32-bit integer or 32/64-bit float samples."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError(f"read_image: {path} is not a TIFF file (bad header)")
    bo = "<" if raw[:2] == b"II" else ">"
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
    codes = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 11: "f", 12: "d"}
    try:
        (ifd,) = struct.unpack_from(bo + "I", raw, 4)
        (count,) = struct.unpack_from(bo + "H", raw, ifd)
        tags: Dict[int, tuple] = {}
        for i in range(count):
            tag, typ, n, value = struct.unpack_from(bo + "HHI4s", raw, ifd + 2 + 12 * i)
            if typ not in codes:
                continue
            size = sizes[typ] * n
            data = value if size <= 4 else raw[struct.unpack(bo + "I", value)[0]:][:size]
            tags[tag] = struct.unpack(bo + codes[typ] * n, data[:size])
        width, height = tags[256][0], tags[257][0]
        bits = tags.get(258, (1,))[0]
        spp = tags.get(277, (1,))[0]
        fmt = tags.get(339, (1,))[0]
        compression = tags.get(259, (1,))[0]
        offsets, counts = tags[273], tags[279]
    except (struct.error, KeyError, IndexError) as e:
        raise ValueError(f"read_image: {path}: malformed TIFF ({e!r}); install Pillow "
                         "(pip install 'cnnrs[image]') for other TIFF flavours") from None
    kinds = {1: "u", 2: "i", 3: "f"}
    if compression != 1 or fmt not in kinds or bits not in (8, 16, 32, 64) \
            or tags.get(284, (1,))[0] != 1:
        raise ValueError(f"read_image: {path}: only uncompressed, contiguous TIFF is readable "
                         "without Pillow (compression "
                         f"{compression}, {bits}-bit); pip install 'cnnrs[image]'")
    dtype = np.dtype(f"{bo}{kinds[fmt]}{bits // 8}")
    body = b"".join(raw[o:o + c] for o, c in zip(offsets, counts))
    need = width * height * spp * dtype.itemsize
    if len(body) < need:
        raise ValueError(f"read_image: {path} is truncated ({len(body)} of {need} bytes)")
    arr = np.frombuffer(body[:need], dtype=dtype).astype(dtype.newbyteorder("="))
    return arr.reshape((height, width, spp) if spp > 1 else (height, width))


def read_image(path: str) -> np.ndarray:
    """Reads an image file into a numpy array: ``(H, W)`` for grey-level and
    label images (uint8/uint16/... as stored; palette PNGs give their
    indices), ``(H, W, 3)`` or ``(H, W, 4)`` for colour.

    Uses Pillow when installed (``pip install 'cnnrs[image]'``: PNG, TIFF,
    JPEG, BMP, ...); without it, uncompressed TIFF files (such as the nuclei
    pair) are still read by a small built-in reader.

    Raises:
        FileNotFoundError: no such file.
        ImportError: a format other than uncompressed TIFF without Pillow.
        ValueError: a file that cannot be decoded.

    Example:
        >>> img = cnnrs.data.read_image("nuclei/img2d.tif")   # (512, 512) uint16
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_image: no such file: {path}")
    try:
        from PIL import Image
    except ImportError:
        if path.lower().endswith((".tif", ".tiff")):
            return _read_tiff(path)
        raise ImportError(f"read_image: reading {os.path.basename(path)} needs Pillow: "
                          "pip install 'cnnrs[image]' (only uncompressed TIFF is read "
                          "without it)") from None
    try:
        with Image.open(path) as im:
            if im.mode == "P":
                return np.array(im)
            if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"):
                return np.array(im)
            return np.array(im.convert("RGB"))
    except OSError as e:
        raise ValueError(f"read_image: cannot decode {path}: {e}") from e


def _as_chw(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[None]
    elif img.ndim == 3 and img.shape[-1] in (3, 4) and img.shape[0] not in (1, 3, 4):
        img = np.moveaxis(img[..., :3], -1, 0)
    if img.ndim != 3:
        raise ValueError(f"SegmentationDataset: {what} must be (H, W), (C, H, W) or (H, W, 3), "
                         f"got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def _as_mask(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., 0]  # RGB(A) masks: labels in the first channel
    if mask.ndim != 2:
        raise ValueError(f"SegmentationDataset: {what} must be an (H, W) label image, got "
                         f"shape {mask.shape}")
    if mask.dtype.kind == "f":
        if not np.all(mask == np.round(mask)):
            raise TypeError(f"SegmentationDataset: {what} must hold integer labels")
    elif mask.dtype.kind not in "iub":
        raise TypeError(f"SegmentationDataset: {what} must hold integer labels, got "
                        f"{mask.dtype}")
    return np.ascontiguousarray(mask, dtype=np.int64)


def _pair_files(image_dir: str, mask_dir: str) -> List[Tuple[str, str]]:
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"SegmentationDataset: no image folder {image_dir}")
    if not os.path.isdir(mask_dir):
        raise FileNotFoundError(f"SegmentationDataset: no mask folder {mask_dir}")
    masks = {}
    for name in sorted(os.listdir(mask_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            masks.setdefault(stem, os.path.join(mask_dir, name))
    pairs, missing = [], []
    for name in sorted(os.listdir(image_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        found = next((masks[stem + s] for s in _MASK_SUFFIXES if stem + s in masks), None)
        if found is None:
            missing.append(name)
        else:
            pairs.append((os.path.join(image_dir, name), found))
    if missing:
        raise ValueError(f"SegmentationDataset: no mask in {mask_dir} for "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(a mask has the image's name, optionally with one of the suffixes "
                         f"{', '.join(repr(s) for s in _MASK_SUFFIXES[1:])})")
    if not pairs:
        raise ValueError(f"SegmentationDataset: no images ({', '.join(IMAGE_EXTENSIONS)}) in "
                         f"{image_dir}")
    return pairs


# --- the dataset ---------------------------------------------------------------------------


def _size_pair(v, what: str) -> Optional[Tuple[int, int]]:
    if v is None:
        return None
    items = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(items) != 2 or not all(isinstance(e, numbers.Integral) and not isinstance(e, bool)
                                  and e > 0 for e in items):
        raise ValueError(f"SegmentationDataset: {what} must be a positive int or a pair, "
                         f"got {v!r}")
    return int(items[0]), int(items[1])


class SegmentationDataset:
    """Image/mask pairs for segmentation, with random crops, flips and
    90-degree rotations applied to image and mask together.

    Args:
        images: ``(M, H, W)`` or ``(M, C, H, W)`` array, or a list of
            ``(H, W)`` / ``(C, H, W)`` / ``(H, W, 3)`` arrays (sizes may
            differ between images; converted to float32).
        masks: integer label images ``(M, H, W)`` or a list of ``(H, W)``
            arrays, one per image and of its size.
        crop_size: an int or ``(h, w)``: every sample is a random crop of
            that size (all 8 flips/rotations keep it; with ``rot90`` a
            non-square crop is drawn transposed for odd turns). None: whole
            images (then all must have one size to be batched).
        flip: random left-right and up-down flips (probability 1/2 each).
        rot90: random quarter turns (0-3).
        samples_per_epoch: the dataset's length; sample ``i`` comes from
            image ``i % M``. Default: M.
        binary: map labels > 0 to 1 (instance label images such as the
            nuclei mask become foreground/background).
        mean, std: if given, images become ``(image - mean) / std``.
        seed: seeds this dataset's generator (the same seed gives the same
            crops in the same order of fetches); None draws from the
            generator seeded by ``cnnrs.manual_seed``.
        transform: optional image-only batch transform applied after the
            joint ones (e.g. ``transforms.GaussianNoise(0.05)``).
        weight_maps: optional per-pixel loss weights, one ``(H, W)`` float
            map per image (e.g. :func:`unet_weight_map`), cropped, flipped and
            rotated with the image and mask; samples then carry a third item.

    ``dataset[i]`` gives ``(image (C, h, w) float32, mask (h, w) int64)``
    (plus ``weight (h, w) float32`` with ``weight_maps``); an index array
    gives a batch ``(n, C, h, w)``, ``(n, h, w)`` (, ``(n, h, w)``) in one
    Rust call per source image (the :class:`DataLoader` fetches that way).

    Raises:
        ValueError: images and masks that differ in number or size, a crop
            larger than an image, bad sizes.
        TypeError: non-integer masks.

    Example:
        >>> x, y = cnnrs.data.synthetic_cells(64, size=128, seed=0)
        >>> ds = SegmentationDataset(x, y, crop_size=96, flip=True, rot90=True, seed=0)
        >>> xb, yb = next(iter(DataLoader(ds, batch_size=8, shuffle=True, seed=0)))
        >>> xb.shape, yb.shape
        ((8, 1, 96, 96), (8, 96, 96))
    """

    def __init__(self, images: Union[np.ndarray, Sequence[np.ndarray]],
                 masks: Union[np.ndarray, Sequence[np.ndarray]],
                 crop_size: Union[int, Tuple[int, int], None] = None, flip: bool = False,
                 rot90: bool = False, samples_per_epoch: Optional[int] = None,
                 binary: bool = False, mean: Optional[float] = None,
                 std: Optional[float] = None, seed: Optional[int] = None,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 weight_maps: Optional[Sequence[np.ndarray]] = None):
        if isinstance(images, np.ndarray):
            images = list(images) if images.ndim in (3, 4) else [images]
        if isinstance(masks, np.ndarray):
            masks = list(masks) if masks.ndim == 3 else [masks]
        images = [_as_chw(im, f"image {i}") for i, im in enumerate(images)]
        masks = [_as_mask(m, f"mask {i}") for i, m in enumerate(masks)]
        if len(images) != len(masks):
            raise ValueError(f"SegmentationDataset: {len(images)} images but {len(masks)} masks")
        if not images:
            raise ValueError("SegmentationDataset: no images")
        for i, (im, m) in enumerate(zip(images, masks)):
            if im.shape[1:] != m.shape:
                raise ValueError(f"SegmentationDataset: image {i} is {im.shape[1:]} but its "
                                 f"mask is {m.shape}")
        if weight_maps is not None:
            weight_maps = [np.ascontiguousarray(wm, dtype=np.float32) for wm in weight_maps]
            if len(weight_maps) != len(images) or any(
                    wm.shape != m.shape for wm, m in zip(weight_maps, masks)):
                raise ValueError("SegmentationDataset: weight_maps must hold one (H, W) map per "
                                 "image, of its mask's size")
        if len({im.shape[0] for im in images}) != 1:
            raise ValueError("SegmentationDataset: images have different channel counts: "
                             f"{sorted({im.shape[0] for im in images})}")
        if mean is not None or std is not None:
            m0 = 0.0 if mean is None else float(mean)
            s0 = 1.0 if std is None else float(std)
            if not s0 > 0:
                raise ValueError(f"SegmentationDataset: std must be > 0, got {std!r}")
            images = [(im - m0) / s0 for im in images]
        if binary:
            masks = [(m > 0).astype(np.int64) for m in masks]
        self.crop_size = _size_pair(crop_size, "crop_size")
        if self.crop_size is not None:
            need = max(self.crop_size) if rot90 else None
            for i, im in enumerate(images):
                h, w = im.shape[1:]
                ch, cw = (need, need) if need else self.crop_size
                if ch > h or cw > w:
                    raise ValueError(f"SegmentationDataset: crop_size {self.crop_size}"
                                     f"{' (rotated)' if rot90 else ''} does not fit image {i} "
                                     f"of size {(h, w)}")
        elif rot90 and any(im.shape[1] != im.shape[2] for im in images):
            raise ValueError("SegmentationDataset: rot90 without crop_size needs square images")
        if samples_per_epoch is not None and (
                isinstance(samples_per_epoch, bool)
                or not isinstance(samples_per_epoch, numbers.Integral) or samples_per_epoch < 1):
            raise ValueError(f"SegmentationDataset: samples_per_epoch must be a positive int, "
                             f"got {samples_per_epoch!r}")
        self.images: List[np.ndarray] = images   # (C, H, W) float32 each
        self.masks: List[np.ndarray] = masks     # (H, W) int64 each
        self.weight_maps: Optional[List[np.ndarray]] = weight_maps
        self.flip, self.rot90 = bool(flip), bool(rot90)
        self.samples_per_epoch = samples_per_epoch
        self.transform = transform
        self._rng = np.random.default_rng(seed) if seed is not None else None

    @classmethod
    def from_folders(cls, image_dir: str, mask_dir: str, **kwargs) -> "SegmentationDataset":
        """Pairs every image file in ``image_dir`` with the file of the same
        name (any image extension; optionally with a ``_mask``, ``_masks``,
        ``_label``, ``_labels`` or ``_seg`` suffix) in ``mask_dir``. PNG or
        TIFF (any format Pillow reads); keyword arguments as the constructor.

        Raises:
            FileNotFoundError: a folder does not exist.
            ValueError: an image without a mask, or no images.
        """
        pairs = _pair_files(image_dir, mask_dir)
        return cls([read_image(a) for a, _ in pairs], [read_image(b) for _, b in pairs],
                   **kwargs)

    @property
    def channels(self) -> int:
        return self.images[0].shape[0]

    def __len__(self) -> int:
        return self.samples_per_epoch if self.samples_per_epoch is not None else len(self.images)

    def _seed(self) -> int:
        rng = self._rng if self._rng is not None else generator()
        return int(rng.integers(0, 2**63))

    def _batch(self, idx: np.ndarray) -> tuple:
        m = len(self.images)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"SegmentationDataset: index out of range for {n} samples")
        sources = np.where(idx < 0, idx + n, idx) % m
        augment = self.crop_size is not None or self.flip or self.rot90
        outs_x: List[Optional[np.ndarray]] = [None] * len(idx)
        outs_y: List[Optional[np.ndarray]] = [None] * len(idx)
        for s in np.unique(sources):
            pos = np.nonzero(sources == s)[0]
            img, mask = self.images[s], self.masks[s]
            if self.weight_maps is not None:
                # The weight map rides along as an extra channel: the joint
                # transforms only move pixels, so it is transformed exactly.
                img = np.concatenate([img, self.weight_maps[s][None]])
            if augment:
                size = self.crop_size or img.shape[1:]
                xs, ys = _native.t_random_crop_pairs(
                    img[None], mask[None], [0] * len(pos), tuple(size), self.flip,
                    self.rot90, self._seed())
            else:
                xs, ys = np.repeat(img[None], len(pos), 0), np.repeat(mask[None], len(pos), 0)
            for j, p in enumerate(pos):
                outs_x[p], outs_y[p] = xs[j], ys[j]
        shapes = {x.shape for x in outs_x}
        if len(shapes) > 1:
            raise ValueError(f"SegmentationDataset: samples of different sizes {sorted(shapes)} "
                             "cannot be batched; set crop_size")
        extra = int(self.weight_maps is not None)
        x = np.stack(outs_x) if outs_x else np.zeros((0, self.channels + extra, 0, 0),
                                                      np.float32)
        y = np.stack(outs_y) if outs_y else np.zeros((0, 0, 0), np.int64)
        wmap = None
        if extra:
            x, wmap = x[:, :-1], np.ascontiguousarray(x[:, -1])
        if self.transform is not None and len(x):
            x = np.asarray(self.transform(np.ascontiguousarray(x)), dtype=np.float32)
        return (x, y) if wmap is None else (x, y, wmap)

    def __getitem__(self, idx):
        if isinstance(idx, (numbers.Integral, np.integer)) and not isinstance(idx, bool):
            return tuple(a[0] for a in self._batch(np.array([int(idx)])))
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError("SegmentationDataset: index must be an int or a 1-D int array")
        return self._batch(arr.astype(np.int64))

    def __repr__(self) -> str:
        sizes = sorted({im.shape[1:] for im in self.images})
        return (f"SegmentationDataset({len(self.images)} images of {sizes[:3]}, "
                f"{self.channels} channel(s), crop_size={self.crop_size}, flip={self.flip}, "
                f"rot90={self.rot90}, len={len(self)})")


# --- the nuclei pair -----------------------------------------------------------------------


def load_nuclei(root: str) -> Tuple[np.ndarray, np.ndarray]:
    """The fluorescence nuclei pair in ``root`` (``img2d.tif``, ``mask2d.tif``).

    Returns:
        ``(image, labels)``: float32 ``(H, W)`` intensities as stored, and
        int64 ``(H, W)`` instance labels (0 background, 1..K nuclei).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: image and mask sizes differ.
    """
    img = read_image(os.path.join(root, "img2d.tif"))
    mask = read_image(os.path.join(root, "mask2d.tif"))
    if img.shape != mask.shape or img.ndim != 2:
        raise ValueError(f"load_nuclei: image {img.shape} and mask {mask.shape} must be one "
                         "(H, W) size")
    return img.astype(np.float32), mask.astype(np.int64)


def nuclei_split(root: str, val_fraction: float = 0.25) -> Dict[str, Any]:
    """Splits the nuclei pair by columns: training on the left
    ``1 - val_fraction`` of the image, validation on the right
    ``val_fraction`` (never seen in training: crops are drawn inside the
    training part only). Intensities are standardised with the mean and
    standard deviation of the training part; masks are binary (nucleus = 1).

    Returns:
        dict with ``train_image`` ``(1, H, W_train)`` float32, ``train_mask``
        ``(H, W_train)`` int64, ``val_image``, ``val_mask``, ``mean``,
        ``std`` and ``split`` (a one-line description).

    Example:
        >>> d = nuclei_split("../shared/data/nuclei")
        >>> d["train_image"].shape, d["val_image"].shape
        ((1, 512, 384), (1, 512, 128))
    """
    img, labels = load_nuclei(root)
    w = img.shape[1]
    cut = int(round(w * (1 - val_fraction)))
    if not 0 < cut < w:
        raise ValueError(f"nuclei_split: val_fraction {val_fraction} leaves no training or "
                         "validation columns")
    train = img[:, :cut]
    mean, std = float(train.mean()), float(train.std()) + 1e-8
    norm = ((img - mean) / std).astype(np.float32)
    fg = (labels > 0).astype(np.int64)
    return {
        "train_image": norm[None, :, :cut].copy(), "train_mask": fg[:, :cut].copy(),
        "val_image": norm[None, :, cut:].copy(), "val_mask": fg[:, cut:].copy(),
        "train_labels": labels[:, :cut].copy(),
        "mean": mean, "std": std,
        "split": (f"nuclei: train on columns 0..{cut - 1} ({img.shape[0]}x{cut}), validate on "
                  f"columns {cut}..{w - 1} ({img.shape[0]}x{w - cut}), never seen in training"),
    }


# --- synthetic cells -----------------------------------------------------------------------


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W) array, edges replicated."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        p = np.pad(x, [(r, r) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        n = x.shape[axis]
        x = sum(k[i] * (p[i:i + n] if axis == 0 else p[:, i:i + n]) for i in range(2 * r + 1))
    return x


def synthetic_cells(n: int, size: Union[int, Tuple[int, int]] = 128, seed: int = 0,
                    density: float = 0.2, instances: bool = False
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Synthetic fluorescence-like images of cell nuclei with their masks,
    the built-in default for training a U-Net without data files.

    Each image holds irregular elliptical blobs (radii 5-14 px, wobbly
    outlines, some touching or overlapping) with uneven brightness and
    texture, on a dim, smoothly varying background; the whole is blurred
    and noised like a microscope image.

    Args:
        n: number of images.
        size: an int or ``(H, W)``.
        seed: the generator seed; the same seed gives the same images.
        density: target fraction of foreground pixels (about).
        instances: label each blob 1..K (where blobs overlap, the earlier
            keeps the pixel) instead of 1 for all; same images either way.

    Returns:
        ``(images, masks)``: float32 ``(n, 1, H, W)`` roughly in [0, 1.5], and
        int64 ``(n, H, W)`` with 1 (or the blob's label) inside a blob, 0
        elsewhere.

    Example:
        >>> x, y = cnnrs.data.synthetic_cells(4, size=64, seed=0)
        >>> x.shape, y.shape, y.max()
        ((4, 1, 64, 64), (4, 64, 64), 1)
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"synthetic_cells: n must be a non-negative int, got {n!r}")
    h, w = _size_pair(size, "size") or (0, 0)
    if not 0 < density < 1:
        raise ValueError(f"synthetic_cells: density must be in (0, 1), got {density!r}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    images = np.empty((n, 1, h, w), np.float32)
    masks = np.empty((n, h, w), np.int64)
    for i in range(n):
        bg = 0.08 + 0.06 * np.sin(xx / w * rng.uniform(1, 4) + rng.uniform(0, 6)) \
            * np.cos(yy / h * rng.uniform(1, 4) + rng.uniform(0, 6))
        img = bg.copy()
        mask = np.zeros((h, w), np.int64)
        k = max(1, int(round(rng.normal(1.0, 0.25) * density * h * w / (np.pi * 9.5**2))))
        for label in range(1, k + 1):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            a, b = rng.uniform(5, 14), rng.uniform(5, 14)
            theta = rng.uniform(0, np.pi)
            harm = rng.normal(0, 0.06, 3)
            phase = rng.uniform(0, 2 * np.pi, 3)
            r = int(np.ceil(max(a, b) * 1.3)) + 2
            y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
            x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
            u = dx * np.cos(theta) + dy * np.sin(theta)
            v = -dx * np.sin(theta) + dy * np.cos(theta)
            phi = np.arctan2(v, u)
            wobble = 1 + sum(harm[j] * np.cos((j + 2) * phi + phase[j]) for j in range(3))
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble
            inside = rho <= 1
            bright = rng.uniform(0.35, 1.0)
            tex = 1 - 0.35 * rho**2 + rng.normal(0, 0.08, rho.shape)
            cell = np.where(inside, bright * tex, 0.0)
            img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], cell)
            sub = mask[y0:y1, x0:x1]
            sub[inside & (sub == 0)] = label if instances else 1
        img = _blur(img, rng.uniform(0.8, 1.6))
        img = img + rng.normal(0, rng.uniform(0.02, 0.06), img.shape)
        images[i, 0] = img
        masks[i] = mask
    return images, masks


# --- the U-Net weight map ------------------------------------------------------------------


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                    balance: bool = True) -> np.ndarray:
    """The U-Net paper's per-pixel loss weights (Ronneberger et al. 2015,
    eq. 2), for :func:`cnnrs.nn.functional.cross_entropy`'s ``pixel_weight``:

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``

    on background pixels, where ``d1``/``d2`` are the distances to the
    nearest and second-nearest object, and ``w(x) = w_c(x)`` on objects.
    ``w_c`` balances the class frequencies (``1`` everywhere without
    ``balance``; else each class gets ``total / (2 * count)``, so the map
    averages 1). The thin background gaps between touching objects get the
    largest weights, which teaches the network to separate them.

    Args:
        labels: ``(H, W)`` instance labels (0 background, 1..K objects) or a
            batch ``(N, H, W)``.
        w0, sigma: border weight and its width in pixels (paper: 10, ~5).
        balance: class-frequency term ``w_c``.

    Returns:
        float32 array shaped like ``labels``.

    Distances are exact Euclidean distances to the nearest pixel of each
    object, computed within ``4 * sigma`` of it (beyond, the border term is
    below ``w0 * exp(-8)``).

    Example:
        >>> img, labels = cnnrs.data.load_nuclei("../shared/data/nuclei")
        >>> w = cnnrs.data.unet_weight_map(labels)
    """
    lab = np.asarray(labels)
    if lab.ndim == 3:
        return np.stack([unet_weight_map(a, w0, sigma, balance) for a in lab])
    if lab.ndim != 2 or lab.dtype.kind not in "iub":
        raise ValueError(f"unet_weight_map: labels must be an integer (H, W) or (N, H, W) "
                         f"array, got {lab.dtype} {lab.shape}")
    h, w = lab.shape
    reach = int(np.ceil(4 * sigma))
    big = np.float64(np.inf)
    d1 = np.full((h, w), big)
    d2 = np.full((h, w), big)
    for k in np.unique(lab[lab > 0]):
        ys, xs = np.nonzero(lab == k)
        y0, y1 = max(ys.min() - reach, 0), min(ys.max() + reach + 1, h)
        x0, x1 = max(xs.min() - reach, 0), min(xs.max() + reach + 1, w)
        # Only the object's outline matters for the distance from outside.
        obj = lab[y0:y1, x0:x1] == k
        pad = np.pad(obj, 1)
        edge = obj & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
        ey, ex = np.nonzero(edge)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        d = np.full(gy.shape, big)
        for s in range(0, len(ey), 256):
            dy = gy[..., None] - (ey[s:s + 256] + y0)
            dx = gx[..., None] - (ex[s:s + 256] + x0)
            d = np.minimum(d, np.sqrt(dy * dy + dx * dx).min(axis=-1))
        d[obj] = 0.0
        a, b = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        d2[y0:y1, x0:x1] = np.where(d < a, a, np.minimum(b, d))
        d1[y0:y1, x0:x1] = np.minimum(a, d)
    fg = lab > 0
    wc = np.ones((h, w))
    if balance:
        n_fg = int(fg.sum())
        n_bg = fg.size - n_fg
        if n_fg and n_bg:
            wc = np.where(fg, fg.size / (2.0 * n_fg), fg.size / (2.0 * n_bg))
    with np.errstate(invalid="ignore", over="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    border = np.where(fg | ~np.isfinite(d2), 0.0, border)
    return (wc + border).astype(np.float32)

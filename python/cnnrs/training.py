"""Training and evaluation loops used by the CLI (and usable from scripts),
plus the data preparation of each built-in dataset."""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from . import metrics
from ._progress import Progress
from ._tensor import Tensor, no_grad
from .data import MNIST, DataLoader, FashionMNIST, load_digits
from .nn import functional as F

__all__ = ["resize_bilinear", "prepare_dataset", "train_epoch", "evaluate", "DIGITS_TEST_FRACTION",
           "SEGMENTATION_LOSSES", "segmentation_loss", "train_segmentation_epoch",
           "predict_segmentation", "evaluate_segmentation"]

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes (N, H, W) images to (N, size, size), bilinear with
    ``align_corners=False`` (PyTorch's default), as data preparation."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        m = np.zeros((n_out, n_in), dtype=np.float64)
        scale = n_in / n_out
        for o in range(n_out):
            src = max((o + 0.5) * scale - 0.5, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            t = src - i0
            m[o, i0] += 1.0 - t
            m[o, i1] += t
        return m

    wh = weights(images.shape[1], size)
    ww = weights(images.shape[2], size)
    return np.einsum("oh,nhw,pw->nop", wh, images.astype(np.float64), ww).astype(np.float32)


def prepare_dataset(name: str, data_dir: Optional[str] = None, image_size: int = 32
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Loads a built-in dataset as normalised float32 (N, 1, 32, 32) arrays.

    Returns:
        ``(x_train, y_train, x_test, y_test, split_description)``.

    ``digits`` is split with a fixed seed into 80% train / 20% held-out test
    and resized to ``image_size``; ``fashion-mnist`` and ``mnist`` use their
    official 60,000/10,000 split and are zero-padded from 28x28 to
    ``image_size`` (resized when it is smaller than 28).
    """
    name = name.lower()
    if name == "digits":
        x, y = load_digits()
        x = resize_bilinear(x / 16.0, image_size)[:, None]
        order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
        n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
        test, train = order[:n_test], order[n_test:]
        split = (f"digits: {len(train)} train / {len(test)} held-out test images "
                 f"(random split, seed {DIGITS_SPLIT_SEED})")
        xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
    elif name in ("fashion-mnist", "fashion_mnist", "fashionmnist", "mnist"):
        if data_dir is None:
            raise ValueError(f"dataset {name!r} needs --data-dir (the folder with the IDX files)")
        cls = MNIST if name == "mnist" else FashionMNIST
        tr, te = cls(data_dir, train=True), cls(data_dir, train=False)
        if image_size >= 28:
            pad = (image_size - 28) // 2
            padding = ((0, 0), (0, 0), (pad, image_size - 28 - pad), (pad, image_size - 28 - pad))
            xtr, ytr = np.pad(tr.images(), padding), tr.targets
            xte, yte = np.pad(te.images(), padding), te.targets
        else:
            xtr, ytr = resize_bilinear(tr.data / 255.0, image_size)[:, None], tr.targets
            xte, yte = resize_bilinear(te.data / 255.0, image_size)[:, None], te.targets
        split = f"{name}: official split, {len(ytr)} train / {len(yte)} test images"
    else:
        raise ValueError(f"unknown dataset {name!r}; known: digits, fashion-mnist, mnist")
    mean, std = float(xtr.mean()), float(xtr.std()) + 1e-8
    xtr = ((xtr - mean) / std).astype(np.float32)
    xte = ((xte - mean) / std).astype(np.float32)
    return xtr, ytr, xte, yte, split


def train_epoch(model, loader: DataLoader, optimizer, desc: str = "",
                schedule: Optional[Callable[[], None]] = None) -> Dict[str, float]:
    """One pass over ``loader``; returns mean loss and training accuracy."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    with Progress(len(loader), desc=desc) as bar:
        for xb, yb in loader:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule()
            n = len(yb)
            total_loss += loss.item() * n
            correct += int((logits.numpy().argmax(1) == yb).sum())
            seen += n
            bar.update(1, f"loss {total_loss / seen:.4f}")
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)}


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> Dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on arrays, in eval mode
    and without recording a graph."""
    model.eval()
    correct, total_loss = 0, 0.0
    with no_grad():
        for start in range(0, len(y), batch_size):
            xb = Tensor(x[start:start + batch_size])
            yb = y[start:start + batch_size]
            logits = model(xb)
            total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int((logits.numpy().argmax(1) == yb).sum())
    return {"accuracy": correct / max(len(y), 1), "loss": total_loss / max(len(y), 1)}


def default_out(model: str, dataset: str) -> str:
    """Where ``cnnrs train`` saves weights when ``--out`` is not given."""
    return os.path.join(os.getcwd(), f"{model}-{dataset}.safetensors")


# --- segmentation -------------------------------------------------------------------------

SEGMENTATION_LOSSES = ("ce", "dice", "ce+dice")


def segmentation_loss(logits: Tensor, masks: np.ndarray, kind: str = "ce+dice",
                      pixel_weight=None) -> Tensor:
    """Per-pixel loss of ``(N, C, H, W)`` logits against ``(N, H, W)`` labels:
    ``'ce'`` (cross-entropy, weighted by ``pixel_weight`` when given),
    ``'dice'`` (soft Dice over the softmax, foreground classes only), or
    ``'ce+dice'`` (their sum)."""
    if kind not in SEGMENTATION_LOSSES:
        raise ValueError(f"segmentation_loss: kind must be one of {SEGMENTATION_LOSSES}, "
                         f"got {kind!r}")
    loss = None
    if kind in ("ce", "ce+dice"):
        loss = F.cross_entropy(logits, masks, pixel_weight=pixel_weight)
    if kind in ("dice", "ce+dice"):
        d = F.dice_loss(logits, masks, include_background=logits.shape[1] <= 1)
        loss = d if loss is None else loss + d
    return loss


def _center(a, h: int, w: int):
    """The centre ``(h, w)`` of the last two dims of ``a`` (offsets floored,
    as ``F.center_crop``): the pixels a ``'valid'`` U-Net's output covers."""
    if a is None or a.shape[-2:] == (h, w):
        return a
    arr = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
    top, left = (arr.shape[-2] - h) // 2, (arr.shape[-1] - w) // 2
    return np.ascontiguousarray(arr[..., top:top + h, left:left + w])


def train_segmentation_epoch(model, loader: DataLoader, optimizer, loss: str = "ce+dice",
                             desc: str = "", schedule: Optional[Callable[[], None]] = None
                             ) -> Dict[str, float]:
    """One pass over a loader of ``(images, masks[, weights])`` batches;
    returns the mean loss and the pixel accuracy on the training crops.
    When the logits are smaller than the masks (a ``'valid'``-padding
    U-Net), masks and weights are cropped to their centre."""
    model.train()
    total, correct, pixels, seen = 0.0, 0, 0, 0
    with Progress(len(loader), desc=desc) as bar:
        for batch in loader:
            xb, yb = batch[0], batch[1]
            wb = batch[2] if len(batch) > 2 else None
            logits = model(xb)
            yb, wb = _center(yb, *logits.shape[2:]), _center(wb, *logits.shape[2:])
            lv = segmentation_loss(logits, yb, loss, wb)
            optimizer.zero_grad()
            lv.backward()
            optimizer.step()
            if schedule is not None:
                schedule()
            n = len(yb)
            total += lv.item() * n
            seen += n
            correct += int((logits.numpy().argmax(1) == yb).sum())
            pixels += yb.size
            bar.update(1, f"loss {total / seen:.4f}")
    return {"loss": total / max(seen, 1), "pixel_accuracy": correct / max(pixels, 1)}


def predict_segmentation(model, image: np.ndarray) -> np.ndarray:
    """Class scores ``(C, H, W)`` (logits) of one ``(C_in, H, W)`` image, in
    eval mode without a graph. A ``'valid'``-padding U-Net gets the input
    mirror-padded so its output covers the whole image (the paper's
    overlap-tile strategy, as one tile)."""
    model.eval()
    x = np.asarray(image, dtype=np.float32)
    h, w = x.shape[1:]
    crop = None
    if getattr(model, "padding", "same") == "valid" and hasattr(model, "output_size"):
        def need(n: int) -> int:
            for p in range(0, 4 * n + 1024):
                try:
                    if model.output_size(n + p, n + p)[0] >= n:
                        return p
                except ValueError:
                    continue
            raise ValueError(f"predict_segmentation: no padding makes size {n} work")
        ph, pw = need(h), need(w)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
        crop = (h, w)
    with no_grad():
        out = model(Tensor(x[None])).numpy()[0]
    if crop is not None:
        top, left = (out.shape[1] - h) // 2, (out.shape[2] - w) // 2
        out = out[:, top:top + h, left:left + w]
    return out


def evaluate_segmentation(model, images, masks, num_classes: Optional[int] = None
                          ) -> Dict[str, object]:
    """Hard Dice and IoU of ``model`` on whole images (each predicted
    separately), counted over all their pixels. ``dice``/``iou`` are the
    foreground scores: class 1 for two classes, else the mean over classes
    1..C-1; ``*_per_class`` hold every class."""
    preds, targets = [], []
    for img, m in zip(images, masks):
        preds.append(predict_segmentation(model, img).argmax(0).reshape(-1))
        targets.append(np.asarray(m, dtype=np.int64).reshape(-1))
    pred, target = np.concatenate(preds), np.concatenate(targets)
    c = num_classes or getattr(model, "num_classes", None) or int(max(pred.max(), target.max())) + 1
    d = metrics.dice(pred, target, num_classes=c)
    j = metrics.iou(pred, target, num_classes=c)
    fg = slice(1, None)
    return {"dice": float(np.nanmean(d[fg])) if c > 1 else float(d[0]),
            "iou": float(np.nanmean(j[fg])) if c > 1 else float(j[0]),
            "dice_per_class": [round(float(v), 4) for v in d],
            "iou_per_class": [round(float(v), 4) for v in j],
            "pixel_accuracy": float((pred == target).mean())}

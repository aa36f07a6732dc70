"""Segmentation metrics on hard predictions: ``dice``, ``iou`` and the
``confusion_matrix`` they come from.

These are evaluation numbers, not training losses (no gradient; for a
differentiable Dice use :func:`cnnrs.nn.functional.dice_loss`), so they are
plain numpy: counts of pixels per class, exact in int64.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._tensor import Tensor

__all__ = ["confusion_matrix", "dice", "iou"]


def _labels(x: Any, op: str, what: str) -> np.ndarray:
    arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{op}: {what} must hold integer class labels, got non-integral "
                            f"{arr.dtype} values")
        return arr.astype(np.int64)
    raise TypeError(f"{op}: {what} must hold integer class labels, got dtype {arr.dtype}")


def _hard_prediction(pred: Any, target: np.ndarray, op: str) -> np.ndarray:
    """Labels from ``pred``: labels shaped like the target, or scores with one
    more dim at axis 1 (argmax over it; one channel: logit > 0)."""
    arr = pred.numpy() if isinstance(pred, Tensor) else np.asarray(pred)
    if arr.ndim == target.ndim + 1 and arr.dtype.kind == "f":
        if arr.shape[:1] + arr.shape[2:] != target.shape:
            raise ValueError(f"{op}: scores of shape {arr.shape} do not match the target "
                             f"{target.shape} (expected (N, C, *) against (N, *))")
        if arr.shape[1] == 1:
            return (arr[:, 0] > 0).astype(np.int64)
        return arr.argmax(axis=1).astype(np.int64)
    labels = _labels(arr, op, "pred")
    if labels.shape != target.shape:
        raise ValueError(f"{op}: pred shape {labels.shape} does not match target shape "
                         f"{target.shape}")
    return labels


def confusion_matrix(pred: Any, target: Any, num_classes: Optional[int] = None,
                     ignore_index: Optional[int] = None) -> np.ndarray:
    """Pixel counts ``M[t, p]`` of target class ``t`` predicted as ``p``.

    Args:
        pred: integer labels shaped like ``target``, or scores ``(N, C, *)``
            (argmax over the class dim; a single channel is a logit,
            foreground where it is > 0).
        target: integer labels ``(N, *)`` (or any shape matching ``pred``).
        num_classes: C; default ``max(pred, target) + 1`` (at least 2).
        ignore_index: target pixels with this value are not counted.

    Shape: output ``(C, C)`` int64.

    Raises:
        ValueError: shapes that do not match, labels outside ``[0, C)``.
        TypeError: non-integral labels.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0])
        array([[1, 1],
               [0, 1]])
    """
    return _confusion("confusion_matrix", pred, target, num_classes, ignore_index)


def _confusion(op: str, pred, target, num_classes, ignore_index) -> np.ndarray:
    t = _labels(target, op, "target")
    p = _hard_prediction(pred, t, op)
    keep = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    t, p = t[keep], p[keep]
    if num_classes is None:
        num_classes = max(int(t.max(initial=0)), int(p.max(initial=0)), 1) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"{op}: num_classes must be a positive int, got {num_classes!r}")
    for name, v in (("target", t), ("pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            bad = v[(v < 0) | (v >= num_classes)][0]
            raise ValueError(f"{op}: {name} label {bad} is out of range for {num_classes} "
                             "classes")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes) \
        .reshape(num_classes, num_classes).astype(np.int64)


def _per_class(op: str, pred, target, num_classes, ignore_index, average, score):
    if average not in (None, "macro"):
        raise ValueError(f"{op}: average must be None or 'macro', got {average!r}")
    m = _confusion(op, pred, target, num_classes, ignore_index)
    tp = np.diag(m).astype(np.float64)
    fp = m.sum(axis=0) - tp
    fn = m.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        s = score(tp, fp, fn)
    if average == "macro":
        present = ~np.isnan(s)
        return float(s[present].mean()) if present.any() else float("nan")
    return s


def dice(pred: Any, target: Any, num_classes: Optional[int] = None,
         ignore_index: Optional[int] = None, average: Optional[str] = None):
    """Hard Dice coefficient (F1) per class: ``2 TP / (2 TP + FP + FN)``,
    counted over all pixels of the batch.

    Args:
        pred, target, num_classes, ignore_index: as :func:`confusion_matrix`.
        average: None (per class) or ``'macro'`` (mean over the classes that
            occur in prediction or target).

    Returns:
        A float64 array ``(C,)`` (NaN for a class absent from both prediction
        and target), or a float with ``average='macro'``. For a binary mask
        the foreground score is ``dice(...)[1]``.

    Raises:
        ValueError, TypeError: as :func:`confusion_matrix`; an unknown
            ``average``.

    Example:
        >>> dice(model(x).numpy(), masks)[1]   # nuclei class
    """
    return _per_class("dice", pred, target, num_classes, ignore_index, average,
                      lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn))


def iou(pred: Any, target: Any, num_classes: Optional[int] = None,
        ignore_index: Optional[int] = None, average: Optional[str] = None):
    """Intersection over union (Jaccard index) per class:
    ``TP / (TP + FP + FN)``, counted over all pixels of the batch.

    Arguments and return value as :func:`dice` (``average='macro'`` is the
    usual mIoU).

    Example:
        >>> iou([0, 1, 1, 1], [0, 1, 1, 0])
        array([0.5       , 0.66666667])
    """
    return _per_class("iou", pred, target, num_classes, ignore_index, average,
                      lambda tp, fp, fn: tp / (tp + fp + fn))

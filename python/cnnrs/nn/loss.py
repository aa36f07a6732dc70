"""Loss and normalisation layers: CrossEntropyLoss, MSELoss,
BCEWithLogitsLoss, DiceLoss, Softmax, LogSoftmax."""

from __future__ import annotations

from .._tensor import _int
from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "DiceLoss", "Softmax",
           "LogSoftmax"]


class CrossEntropyLoss(Module):
    """Cross-entropy between logits and integer class labels, as
    ``torch.nn.CrossEntropyLoss`` (see :func:`cnnrs.nn.functional.cross_entropy`).

    Args:
        weight: per-class weights; not supported, must be None.
        ignore_index: labels equal to it contribute no loss and no gradient.
            Default -100.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``.

    Shape:
        Input ``(N, C)`` or ``(N, C, d1, ...)``, target ``(N,)`` or
        ``(N, d1, ...)``; output ``()``, or the target's shape for ``'none'``.

    Raises:
        ValueError: a weight is given, or an unknown reduction (at
            construction); bad labels or shapes (when called).
        TypeError: options passed by position after ``weight`` (keyword-only
            here, since PyTorch's positional order holds deprecated arguments).

    Example:
        >>> loss_fn = nn.CrossEntropyLoss()
        >>> loss = loss_fn(model(x), labels)
    """

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__()
        if weight is not None:
            raise ValueError("CrossEntropyLoss: per-class weight is not supported (use None)")
        self.ignore_index = _int(ignore_index, "CrossEntropyLoss")
        self.reduction = F._check_reduction(reduction, "CrossEntropyLoss")

    def forward(self, input, target, pixel_weight=None):
        """``pixel_weight``: optional per-label weight map shaped like
        ``target`` (see :func:`cnnrs.nn.functional.cross_entropy`)."""
        return F.cross_entropy(input, target, reduction=self.reduction,
                               ignore_index=self.ignore_index, pixel_weight=pixel_weight)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction='{self.reduction}'"


class MSELoss(Module):
    """Mean squared error, as ``torch.nn.MSELoss`` (see
    :func:`cnnrs.nn.functional.mse_loss`; shapes must match exactly).

    Args:
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``; keyword-only.

    Shape:
        Input and target the same shape; output ``()``, or that shape for
        ``'none'``.

    Raises:
        ValueError: an unknown reduction (at construction); shapes that
            differ (when called).

    Example:
        >>> nn.MSELoss()(cnnrs.tensor([1.0, 2.0]), cnnrs.tensor([1.0, 4.0])).item()
        2.0
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        self.reduction = F._check_reduction(reduction, "MSELoss")

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'"


class BCEWithLogitsLoss(Module):
    """Sigmoid + binary cross-entropy, as ``torch.nn.BCEWithLogitsLoss`` (see
    :func:`cnnrs.nn.functional.binary_cross_entropy_with_logits`).

    Args:
        weight: optional rescaling weight broadcasting to the input's shape.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'``; keyword-only.
        pos_weight: optional weight of positive examples, broadcasting to the
            input's shape; keyword-only.

    Shape:
        Input and target the same shape; output ``()``, or that shape for
        ``'none'``.

    Raises:
        ValueError: an unknown reduction (at construction); shape mismatches
            (when called).

    Example:
        >>> loss = nn.BCEWithLogitsLoss(pos_weight=cnnrs.tensor([3.0]))(logits, mask)
    """

    def __init__(self, weight=None, *, reduction: str = "mean", pos_weight=None):
        super().__init__()
        self.weight = weight
        self.pos_weight = pos_weight
        self.reduction = F._check_reduction(reduction, "BCEWithLogitsLoss")

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'"


class DiceLoss(Module):
    """Soft Dice loss on softmax or sigmoid probabilities (see
    :func:`cnnrs.nn.functional.dice_loss`; not in PyTorch's core).

    Args (keyword-only): smooth (1.0), activation (``'softmax'`` with
    integer labels, or ``'sigmoid'`` with [0, 1] targets shaped like the
    input), include_background (True), ignore_index (-100), reduction
    (``'mean'``).

    Shape:
        Input ``(N, C, *)``; target ``(N, *)`` labels (softmax) or ``(N, C, *)``
        (sigmoid); output ``()``, or ``(N, C')`` for ``'none'``.

    Raises:
        ValueError: an unknown activation or reduction (at construction);
            target mismatches (when called).

    Example:
        >>> loss = nn.DiceLoss()(model(x), masks) + nn.CrossEntropyLoss()(model(x), masks)
    """

    def __init__(self, *, smooth: float = 1.0, activation: str = "softmax",
                 include_background: bool = True, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"DiceLoss: activation must be 'softmax' or 'sigmoid', "
                             f"got {activation!r}")
        self.smooth = float(smooth)
        self.activation = activation
        self.include_background = bool(include_background)
        self.ignore_index = _int(ignore_index, "DiceLoss")
        self.reduction = F._check_reduction(reduction, "DiceLoss")

    def forward(self, input, target):
        return F.dice_loss(input, target, smooth=self.smooth, activation=self.activation,
                           include_background=self.include_background,
                           ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return (f"smooth={self.smooth}, activation='{self.activation}', "
                f"reduction='{self.reduction}'")


def _dim(dim, layer: str) -> int:
    if dim is None:
        raise TypeError(f"{layer}: dim must be given (PyTorch's implicit choice is deprecated)")
    return _int(dim, layer)


class Softmax(Module):
    """Softmax along ``dim``, as ``torch.nn.Softmax``.

    Args:
        dim: the dim whose slices sum to 1. Required (None raises TypeError).

    Shape:
        Any; the output has the input's shape.

    Example:
        >>> nn.Softmax(dim=1)(cnnrs.tensor([[1.0, 1.0]])).numpy()
        array([[0.5, 0.5]], dtype=float32)
    """

    def __init__(self, dim=None):
        super().__init__()
        self.dim = _dim(dim, "Softmax")

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax along ``dim``, as ``torch.nn.LogSoftmax``.

    Args:
        dim: the dim to normalise. Required (None raises TypeError).

    Shape:
        Any; the output has the input's shape.

    Example:
        >>> nn.LogSoftmax(dim=0)(cnnrs.tensor([0.0, 0.0])).numpy()
        array([-0.6931472, -0.6931472], dtype=float32)
    """

    def __init__(self, dim=None):
        super().__init__()
        self.dim = _dim(dim, "LogSoftmax")

    def forward(self, x):
        return F.log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

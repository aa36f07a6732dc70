"""Upsampling layer: ``Upsample``."""

from __future__ import annotations

from typing import Optional

from . import functional as F
from .module import Module

__all__ = ["Upsample"]


class Upsample(Module):
    """Resizes ``(N, C, H, W)`` images, as ``torch.nn.Upsample`` (a module
    wrapper of :func:`cnnrs.nn.functional.interpolate`; no parameters).

    Args:
        size: output ``(H_out, W_out)`` or one int for both.
        scale_factor: multiplier of the input size, a number or a pair.
            Exactly one of ``size`` and ``scale_factor`` must be given.
        mode: ``'nearest'``, ``'bilinear'`` or ``'bicubic'``. Default:
            ``'nearest'``.
        align_corners: for bilinear/bicubic, align the corner pixels instead of
            the pixel centres (default False); must be None for nearest.
        recompute_scale_factor: see :func:`~cnnrs.nn.functional.interpolate`.

    Shape:
        - input ``(N, C, H, W)``, output ``(N, C, H_out, W_out)`` with
          ``H_out = size[0]`` or ``floor(H * scale_factor[0])`` (same for W).

    Raises:
        ValueError: (when called) see :func:`~cnnrs.nn.functional.interpolate`.

    Example:
        >>> up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        >>> up(cnnrs.randn(1, 64, 28, 28)).shape
        (1, 64, 56, 56)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: Optional[bool] = None,
                 recompute_scale_factor: Optional[bool] = None):
        super().__init__()
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor is not None else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return info + f", mode={self.mode!r}"

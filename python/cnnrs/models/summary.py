"""``summary(model, input_shape)``: one row per layer with output shape,
parameters, FLOPs and receptive field, plus totals (like torchinfo)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from .. import nn
from .._tensor import Tensor, no_grad, zeros

__all__ = ["summary", "Summary", "LayerRow"]


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: Tuple[int, ...]
    params: int
    flops: int
    receptive_field: int


@dataclass
class Summary:
    input_shape: Tuple[int, ...]
    rows: List[LayerRow] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    def __str__(self) -> str:
        head = f"{'layer':<34}{'type':<20}{'output shape':<22}{'params':>12}{'FLOPs':>16}{'RF':>6}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.name:<34.34}{r.kind:<20.20}{str(r.output_shape):<22}"
                         f"{r.params:>12,}{r.flops:>16,}{r.receptive_field:>6}")
        lines.append("-" * len(head))
        lines.append(f"input {self.input_shape}: {self.total_params:,} parameters, "
                     f"{self.total_flops:,} FLOPs per forward (2 per multiply-add in conv/linear "
                     f"layers), {self.total_flops / 1e9:.3f} GFLOP")
        return "\n".join(lines)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _geometry(m) -> Tuple[int, float, int]:
    """(kernel, stride, dilation) of a spatial layer along H; (1, 1, 1) else.
    Up-sampling layers report the input taps one output pixel reads and a
    fractional stride: a transposed conv reads ``ceil(k / s)`` inputs (2x2
    stride 2: one), a bilinear x2 upsample two, nearest one."""
    if isinstance(m, nn.ConvTranspose2d):
        k, s = _pair(m.kernel_size)[0], _pair(m.stride)[0]
        return -(-k // s), 1.0 / s, _pair(m.dilation)[0]
    if isinstance(m, nn.Upsample):
        f = m.scale_factor[0] if isinstance(m.scale_factor, tuple) else m.scale_factor
        taps = {"nearest": 1, "bilinear": 2, "bicubic": 4}.get(m.mode, 1)
        return taps, (1.0 / f if f else 1.0), 1
    if isinstance(m, nn.Conv2d):
        return _pair(m.kernel_size)[0], _pair(m.stride)[0], _pair(m.dilation)[0]
    for attr in ("kernel_size",):
        if hasattr(m, attr) and getattr(m, attr) is not None:
            k = _pair(getattr(m, attr))[0]
            s = getattr(m, "stride", None)
            s = k if s is None else _pair(s)[0]
            d = _pair(getattr(m, "dilation", 1))[0]
            return k, s, d
    return 1, 1, 1


def summary(model: nn.Module, input_shape: Sequence[int]) -> Summary:
    """Runs one forward pass on zeros of ``input_shape`` (with the batch dim)
    in eval mode without recording a graph, and reports every leaf layer.

    Receptive field (along H, in input pixels) is tracked through the tensors
    that flow between layers; where a tensor comes from outside a layer (a
    residual add, a ``flatten`` call), the widest field among the layer
    outputs of the same shape is used (the main branch of a residual block),
    else the latest.

    Example:
        >>> print(cnnrs.models.summary(cnnrs.models.lenet5(), (1, 1, 32, 32)))
    """
    shape = tuple(int(v) for v in input_shape)
    result = Summary(shape)
    info: Dict[int, Tuple[int, int]] = {}
    latest: Dict[Tuple[int, ...], Tuple[int, int]] = {shape: (1, 1)}
    last = [(1, 1)]
    originals = []
    names = {id(m): n for n, m in model.named_modules()}
    keep_alive = []

    def wrap(m):
        fwd = m.forward

        def hooked(x, *args, **kwargs):
            out = fwd(x, *args, **kwargs)
            rf, jump = (info.get(id(x)) or latest.get(tuple(getattr(x, "shape", ())))
                        or last[0])
            k, s, d = _geometry(m)
            rf, jump = rf + (k - 1) * d * jump, jump * s
            if isinstance(out, Tensor):
                keep_alive.append(out)
                info[id(out)] = (rf, jump)
                # A residual add merges branches: keep the widest field per shape.
                if out.shape not in latest or latest[out.shape][0] < rf:
                    latest[out.shape] = (rf, jump)
                last[0] = (rf, jump)
            params = sum(p.numel() for p in m.parameters(recurse=False))
            flops = 0
            if isinstance(m, nn.Conv2d) and isinstance(out, Tensor):
                kh, kw = _pair(m.kernel_size)
                flops = 2 * out.numel() * (m.in_channels // m.groups) * kh * kw
            elif isinstance(m, nn.ConvTranspose2d) and isinstance(out, Tensor):
                kh, kw = _pair(m.kernel_size)
                flops = 2 * x.numel() * (m.out_channels // m.groups) * kh * kw
            elif isinstance(m, nn.Linear) and isinstance(out, Tensor):
                flops = 2 * out.numel() * m.in_features
            result.rows.append(LayerRow(names.get(id(m), "?"), type(m).__name__,
                                        tuple(getattr(out, "shape", ())), params, flops,
                                        int(round(rf))))
            return out

        return hooked

    for m in model.modules():
        if m is not model and not any(True for _ in m.children()):
            originals.append((m, m.__dict__.get("forward")))
            object.__setattr__(m, "forward", wrap(m))
    was_training = model.training
    try:
        model.eval()
        with no_grad():
            model(zeros(*shape))
    finally:
        for m, orig in originals:
            if orig is None:
                del m.__dict__["forward"]
            else:
                object.__setattr__(m, "forward", orig)
        model.train(was_training)
    return result

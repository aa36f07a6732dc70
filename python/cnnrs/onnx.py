"""Export a model to ONNX by tracing one forward pass: ``cnnrs.onnx.export``.

Every op a cnnrs model runs reaches Rust through one module,
``cnnrs._native``. The exporter swaps each function of that module for a
wrapper that still computes the real value (so every shape is known and the
traced output can be compared with ONNX Runtime's) and also records one or
more ONNX nodes. Wrapping at that level catches ``nn`` layers,
``nn.functional``, ``cnnrs.cat`` and the Tensor operators (``+ - * /``,
``reshape``, ``flatten``) alike; an op without a converter stops the export
with ``NotImplementedError`` naming it. The patches live inside a context
manager that always restores the originals, apply to the exporting thread
only, and one export runs at a time.

Needs the optional ``onnx`` package (``pip install 'cnnrs[onnx]'``, which
also brings ``onnxruntime`` to run the result); ``import cnnrs`` never
imports it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._tensor import Tensor, as_tensor, no_grad

__all__ = ["export"]

_LOCK = threading.Lock()

# Functions of ``_native`` that are not tensor ops: left alone while tracing.
# (Other functions that take no Var, e.g. CPU probes, pass through too.)
_NOT_OPS = {"Var", "Sgd", "Adam", "set_grad_enabled", "is_grad_enabled", "set_num_threads",
            "get_num_threads", "manual_seed"}


def _import_onnx():
    try:
        import onnx  # noqa: F401  (heavy: imported only when exporting)
        from onnx import helper, numpy_helper  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "cnnrs.onnx.export needs the 'onnx' package: pip install 'cnnrs[onnx]' "
            "(or pip install onnx; add onnxruntime to run the exported model)"
        ) from e
    return onnx


class _Unsupported(NotImplementedError):
    pass


def _unsupported(op: str, why: str = "") -> NotImplementedError:
    detail = f" ({why})" if why else ""
    return _Unsupported(f"cnnrs.onnx.export: cannot export op '{op}'{detail}")


class _Graph:
    """The ONNX graph being recorded: nodes, initializers and the map from
    traced values (``_native.Var`` objects, by identity) to ONNX names."""

    def __init__(self, onnx_mod, opset: int, dynamic_batch: bool):
        self.onnx = onnx_mod
        self.helper = onnx_mod.helper
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.nodes: List[Any] = []
        self.inits: Dict[str, np.ndarray] = {}
        self.names: Dict[int, str] = {}      # id(Var) -> ONNX value name
        self.traced: set = set()             # ids of values that depend on the inputs
        self.keep: List[Any] = []            # keeps traced Vars alive so ids stay unique
        self.param_names: Dict[int, str] = {}
        self.const_names: Dict[int, str] = {}
        self.scope: List[str] = []
        self.used: set = set()
        self.thread = threading.get_ident()

    # --- names ----------------------------------------------------------------
    def _unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name

    def _prefix(self) -> str:
        path = "/".join(s for s in self.scope if s)
        return f"/{path}/" if path else "/"

    def const(self, value, hint: str = "Constant", dtype=np.float32) -> str:
        """A new initializer holding ``value``; returns its name."""
        name = self._unique(f"{self._prefix()}{hint}")
        self.inits[name] = np.asarray(value, dtype=dtype)
        return name

    def ints(self, values, hint: str = "Constant") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, np.int64)

    def name(self, var) -> str:
        """The ONNX name of an op input: a traced value, a parameter or buffer
        (an initializer named by its state_dict key) or a constant."""
        key = id(var)
        if key in self.names:
            return self.names[key]
        label = self.param_names.get(key) or self.const_names.get(key)
        if label is not None and label not in self.used:
            self.used.add(label)
            name = label
        else:
            name = self._unique(f"{self._prefix()}{label or 'Constant'}")
        self.inits[name] = np.asarray(var.numpy(), dtype=np.float32)
        self.names[key] = name
        self.keep.append(var)
        return name

    def bind(self, var, name: str) -> None:
        """Records that the op result ``var`` is the ONNX value ``name``."""
        self.names[id(var)] = name
        self.traced.add(id(var))
        self.keep.append(var)

    def alias(self, out, inp) -> None:
        self.bind(out, self.name(inp))

    # --- nodes ----------------------------------------------------------------
    def node(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs) -> List[str]:
        base = self._unique(f"{self._prefix()}{op_type}")
        outs = [self._unique(f"{base}_output_{i}") for i in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs

    def emit(self, out_var, op_type: str, inputs: Sequence[str], **attrs) -> str:
        (out,) = self.node(op_type, inputs, **attrs)
        self.bind(out_var, out)
        return out


# --- converters: one per _native function, same parameters ----------------------

def _pads_hw(top: int, bottom: int, left: int, right: int) -> List[int]:
    return [int(top), int(left), int(bottom), int(right)]  # ONNX: begins, then ends


def _conv2d(g: _Graph, out, x, w, b, stride, padding, dilation, groups, relu=False):
    kh, kw = w.shape[2], w.shape[3]
    if isinstance(padding, str):
        if padding == "valid":
            pads = [0, 0, 0, 0]
        else:  # 'same' (stride 1): the odd extra row/column goes bottom/right, as PyTorch
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = _pads_hw(th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        pads = _pads_hw(*padding)
    ins = [g.name(x), g.name(w)] + ([g.name(b)] if b is not None else [])
    attrs = dict(kernel_shape=[kh, kw], strides=list(stride), pads=pads,
                 dilations=list(dilation), group=int(groups))
    if relu:
        (y,) = g.node("Conv", ins, **attrs)
        g.emit(out, "Relu", [y])
    else:
        g.emit(out, "Conv", ins, **attrs)


def _conv_transpose2d(g: _Graph, out, x, w, b, stride, padding, output_padding, dilation,
                      groups):
    ins = [g.name(x), g.name(w)] + ([g.name(b)] if b is not None else [])
    g.emit(out, "ConvTranspose", ins, kernel_shape=[w.shape[2], w.shape[3]],
           strides=list(stride), pads=_pads_hw(padding[0], padding[0], padding[1], padding[1]),
           output_padding=list(output_padding), dilations=list(dilation), group=int(groups))


def _linear(g: _Graph, out, x, w, b):
    if len(x.shape) == 2:
        ins = [g.name(x), g.name(w)] + ([g.name(b)] if b is not None else [])
        g.emit(out, "Gemm", ins, transB=1)
        return
    (wt,) = g.node("Transpose", [g.name(w)], perm=[1, 0])
    if b is None:
        g.emit(out, "MatMul", [g.name(x), wt])
    else:
        (y,) = g.node("MatMul", [g.name(x), wt])
        g.emit(out, "Add", [y, g.name(b)])


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    o = -(-span // s) + 1
    if (o - 1) * s >= size + p:  # PyTorch drops a last window starting in the right padding
        o -= 1
    return o


def _ceil_extra(size: int, k: int, s: int, p: int, d: int) -> int:
    """Extra end padding that makes floor mode give PyTorch's ceil-mode size
    (ONNX's ceil_mode keeps a last window that starts in the right padding;
    PyTorch drops it, so ceil mode is spelled as explicit padding instead)."""
    o = _out_size(size, k, s, p, d, True)
    return max(0, (o - 1) * s + d * (k - 1) + 1 - size - 2 * p)


def _max_pool2d(g: _Graph, out, x, kernel_size, stride, padding, dilation, ceil_mode,
                return_indices):
    if return_indices:
        raise _unsupported("max_pool2d", "return_indices=True")
    size = (x.shape[2], x.shape[3])
    extra = [_ceil_extra(size[i], kernel_size[i], stride[i], padding[i], dilation[i])
             if ceil_mode else 0 for i in range(2)]
    ph, pw = padding
    y = g.name(x)
    if any(padding[i] + extra[i] >= kernel_size[i] for i in range(2)):
        # ONNX Runtime wants pads below the kernel size: pad with -inf first.
        (y,) = g.node("Pad", [y, g.ints([0, 0, ph, pw, 0, 0, ph + extra[0], pw + extra[1]],
                                        "pads"),
                              g.const(np.float32(-np.inf), "value")], mode="constant")
        ph = pw = 0
        extra = [0, 0]
    g.emit(out[0], "MaxPool", [y], kernel_shape=list(kernel_size), strides=list(stride),
           pads=_pads_hw(ph, ph + extra[0], pw, pw + extra[1]), dilations=list(dilation))


def _avg_pool2d(g: _Graph, out, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
    size = (x.shape[2], x.shape[3])
    extra = [_ceil_extra(size[i], kernel_size[i], stride[i], padding[i], 1)
             if ceil_mode else 0 for i in range(2)]
    ph, pw = padding
    attrs = dict(kernel_shape=list(kernel_size), strides=list(stride))
    y = g.name(x)
    if divisor_override is not None:
        # sum over the window (zero padding and ceil-mode overhang add
        # nothing), divided by the override
        (y,) = g.node("Pad", [y, g.ints([0, 0, ph, pw, 0, 0, ph + extra[0], pw + extra[1]],
                                        "pads")], mode="constant")
        (y,) = g.node("AveragePool", [y], count_include_pad=1, **attrs)
        factor = kernel_size[0] * kernel_size[1] / float(divisor_override)
        g.emit(out, "Mul", [y, g.const(np.float32(factor), "divisor")])
        return
    if count_include_pad and any(extra):
        # PyTorch counts the zero padding but not a ceil-mode window's
        # overhang past it: pad with real zeros, then count only what is inside.
        if ph or pw:
            (y,) = g.node("Pad", [y, g.ints([0, 0, ph, pw, 0, 0, ph, pw], "pads")],
                          mode="constant")
        g.emit(out, "AveragePool", [y], pads=_pads_hw(0, extra[0], 0, extra[1]),
               count_include_pad=0, **attrs)
        return
    g.emit(out, "AveragePool", [y], pads=_pads_hw(ph, ph + extra[0], pw, pw + extra[1]),
           count_include_pad=int(bool(count_include_pad)), **attrs)


def _adaptive_weights(size: int, out: int) -> np.ndarray:
    """``(out, size)`` matrix whose row ``o`` averages ``[floor(o*L/out), ceil((o+1)*L/out))``."""
    a = np.zeros((out, size), dtype=np.float64)
    for o in range(out):
        lo, hi = (o * size) // out, -(-((o + 1) * size) // out)
        a[o, lo:hi] = 1.0 / (hi - lo)
    return a.astype(np.float32)


def _adaptive_avg_pool2d(g: _Graph, out, x, output_size):
    h, w = x.shape[2], x.shape[3]
    oh, ow = output_size
    if (oh, ow) == (h, w):
        g.alias(out, x)
    elif (oh, ow) == (1, 1):
        g.emit(out, "GlobalAveragePool", [g.name(x)])
    elif h % oh == 0 and w % ow == 0:  # uniform windows: a plain average pool
        k = [h // oh, w // ow]
        g.emit(out, "AveragePool", [g.name(x)], kernel_shape=k, strides=k)
    else:
        # Windows of different sizes (or overlapping, or upsampling): each
        # axis is a fixed linear map, so Y = A_h @ X @ A_w^T exactly.
        y = g.name(x)
        if ow != w:
            (y,) = g.node("MatMul", [y, g.const(_adaptive_weights(w, ow).T, "pool_w")])
        if oh != h:
            g.emit(out, "MatMul", [g.const(_adaptive_weights(h, oh), "pool_h"), y])
        else:
            g.bind(out, y)


def _batch_norm(g: _Graph, out, x, running_mean, running_var, weight, bias, training,
                momentum, eps):
    if training or running_mean is None or running_var is None:
        raise _unsupported("batch_norm", "batch statistics: export in eval mode with "
                           "track_running_stats=True")
    c = x.shape[1]
    scale = g.name(weight) if weight is not None else g.const(np.ones(c), "weight")
    shift = g.name(bias) if bias is not None else g.const(np.zeros(c), "bias")
    g.emit(out, "BatchNormalization",
           [g.name(x), scale, shift, g.name(running_mean), g.name(running_var)],
           epsilon=float(eps))


def _identity_unless_training(op: str):
    def convert(g: _Graph, out, x, p, training, *rest):
        if training and float(p) > 0.0:
            raise _unsupported(op, "training mode is random: call model.eval() or pass "
                               "training=False")
        g.alias(out, x)
    return convert


def _cutout(g: _Graph, out, x, size, training):
    if training:
        raise _unsupported("cutout", "training mode is random")
    g.alias(out, x)


def _max_pool_dropout(g: _Graph, out, x, kernel, stride, p, training, weighted_eval):
    if training:
        raise _unsupported("max_pool_dropout", "training mode is random")
    if weighted_eval and float(p) > 0.0:
        raise _unsupported("max_pool_dropout", "eval_mode='weighted' has no ONNX equivalent; "
                           "use eval_mode='max'")
    g.emit(out, "MaxPool", [g.name(x)], kernel_shape=list(kernel), strides=list(stride))


def _unary(op_type: str):
    def convert(g: _Graph, out, x):
        g.emit(out, op_type, [g.name(x)])
    return convert


def _binary(op_type: str):
    def convert(g: _Graph, out, a, b):
        g.emit(out, op_type, [g.name(a), g.name(b)])
    return convert


def _affine(g: _Graph, out, x, scale, shift):
    scale, shift = np.float32(scale), np.float32(shift)
    y = g.name(x)
    if scale == 1 and shift == 0:
        g.alias(out, x)
        return
    if scale != 1:
        if shift == 0:
            g.emit(out, "Mul", [y, g.const(scale, "scale")])
            return
        (y,) = g.node("Mul", [y, g.const(scale, "scale")])
    g.emit(out, "Add", [y, g.const(shift, "shift")])


def _softmax(op_type: str):
    def convert(g: _Graph, out, x, dim):
        g.emit(out, op_type, [g.name(x)], axis=int(dim))
    return convert


def _reduce(op_type: str):
    def convert(g: _Graph, out, x, dim=None, keepdim=False):
        keep = int(len(out.shape) == len(x.shape))
        if dim is None:
            g.emit(out, op_type, [g.name(x)], keepdims=keep)
        elif op_type == "ReduceSum" or g.opset >= 18:  # axes became an input
            g.emit(out, op_type, [g.name(x), g.ints([int(dim)], "axes")], keepdims=keep)
        else:
            g.emit(out, op_type, [g.name(x)], axes=[int(dim)], keepdims=keep)
    return convert


def _reshape_to(g: _Graph, out, x, target: List[int]) -> None:
    target = [int(v) for v in target]
    allowzero = None
    if 0 in target:  # a literal zero-size dim, not "copy the input dim"
        allowzero = 1
    elif g.dynamic_batch and x.shape and target and target[0] == x.shape[0]:
        target[0] = 0  # keep the (dynamic) batch dim: ONNX's 0 copies the input's
    g.emit(out, "Reshape", [g.name(x), g.ints(target, "shape")], allowzero=allowzero)


def _reshape(g: _Graph, out, x, shape):
    if tuple(out.shape) == tuple(x.shape):
        g.alias(out, x)
    else:
        _reshape_to(g, out, x, list(shape))


def _flatten(g: _Graph, out, x, start_dim=0, end_dim=-1):
    n = len(x.shape)
    if tuple(out.shape) == tuple(x.shape):
        g.alias(out, x)
        return
    s = start_dim + n if start_dim < 0 else start_dim
    e = end_dim + n if end_dim < 0 else end_dim
    if s == 1 and e == n - 1:
        g.emit(out, "Flatten", [g.name(x)], axis=1)
        return
    if n == 0:
        _reshape_to(g, out, x, [1])
        return
    target = [0] * s + [-1] + [int(v) for v in x.shape[e + 1:]]
    if any(v == 0 for v in x.shape):
        target = list(out.shape)  # zero-size dims: spell the shape out
        _reshape_to(g, out, x, target)
        return
    g.emit(out, "Reshape", [g.name(x), g.ints(target, "shape")])


def _cat(g: _Graph, out, tensors, dim):
    g.emit(out, "Concat", [g.name(t) for t in tensors], axis=int(dim))


def _slice(g: _Graph, x_name: str, starts, ends, axes) -> str:
    (y,) = g.node("Slice", [x_name, g.ints(starts, "starts"), g.ints(ends, "ends"),
                            g.ints(axes, "axes")])
    return y


def _pad(g: _Graph, out, x, pads, mode, value):
    rank = len(x.shape)
    pairs = [(int(pads[i]), int(pads[i + 1])) for i in range(0, len(pads), 2)]
    # pairs[0] is the last dim, pairs[1] the one before (PyTorch's order)
    y = g.name(x)
    crop = [(rank - 1 - i, lo, hi) for i, (lo, hi) in enumerate(pairs) if lo < 0 or hi < 0]
    if crop:  # negative constant padding removes elements: a Slice
        axes = [a for a, _, _ in crop]
        starts = [max(0, -lo) for _, lo, _ in crop]
        ends = [x.shape[a] - max(0, -hi) for a, _, hi in crop]
        y = _slice(g, y, starts, ends, axes)
    begins, ends_ = [0] * rank, [0] * rank
    for i, (lo, hi) in enumerate(pairs):
        begins[rank - 1 - i], ends_[rank - 1 - i] = max(lo, 0), max(hi, 0)
    if not any(begins) and not any(ends_):
        if crop:
            g.bind(out, y)
        else:
            g.alias(out, x)
        return
    onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    ins = [y, g.ints(begins + ends_, "pads")]
    if onnx_mode == "constant":
        ins.append(g.const(np.float32(value), "value"))
    g.emit(out, "Pad", ins, mode=onnx_mode)


def _center_crop(g: _Graph, out, x, size):
    h, w = x.shape[-2], x.shape[-1]
    oh, ow = size
    if (oh, ow) == (h, w):
        g.alias(out, x)
        return
    top, left = (h - oh) // 2, (w - ow) // 2
    g.bind(out, _slice(g, g.name(x), [top, left], [top + oh, left + ow], [-2, -1]))


def _resize_axis_plan(mode: str, n_in: int, n_out: int, factor: Optional[float],
                      recompute: Optional[bool], align_corners: Optional[bool]) -> bool:
    """True when cnnrs maps this axis's coordinates with ``in / out`` (what
    ONNX Resize does when given sizes), False when with ``1 / scale_factor``."""
    if factor is None or recompute or align_corners:
        return True
    if mode == "nearest" and n_out in (n_in, 2 * n_in):  # PyTorch's special cases
        return True
    if mode == "bilinear" and n_out == n_in:
        return True
    return 1.0 / float(factor) == n_in / n_out


def _interpolate(g: _Graph, out, x, size, scale_factor, mode, align_corners,
                 recompute_scale_factor):
    h, w = x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    attrs: Dict[str, Any] = {}
    if mode == "nearest":
        # PyTorch's legacy nearest: src = floor(dst * in / out)
        attrs.update(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    elif mode in ("bilinear", "bicubic"):
        attrs["mode"] = "linear" if mode == "bilinear" else "cubic"
        attrs["coordinate_transformation_mode"] = (
            "align_corners" if align_corners else "half_pixel")
        if mode == "bicubic":
            attrs.update(cubic_coeff_a=-0.75, exclude_outside=0)
    else:
        raise _unsupported("interpolate", f"mode {mode!r}")
    factors = (None, None) if scale_factor is None else tuple(scale_factor)
    by_size = [_resize_axis_plan(mode, n, o, f, recompute_scale_factor, align_corners)
               for n, o, f in zip((h, w), (oh, ow), factors)]
    if all(by_size):
        if g.dynamic_batch:
            (shape,) = g.node("Shape", [g.name(x)])
            nc = _slice(g, shape, [0], [2], [0])
            (sizes,) = g.node("Concat", [nc, g.ints([oh, ow], "size")], axis=0)
        else:
            sizes = g.ints(list(out.shape), "sizes")
        g.emit(out, "Resize", [g.name(x), "", "", sizes], **attrs)
        return
    if (oh, ow) == (h, w):
        # ONNX Runtime copies when the size does not change; cnnrs (as
        # PyTorch) still resamples with 1/scale_factor here.
        raise _unsupported("interpolate", f"{mode} with scale_factor {scale_factor} keeps the "
                           "size but moves the samples; ONNX Runtime would copy")
    # cnnrs maps with 1/scale_factor: give ONNX the scales (for an axis that
    # maps with in/out, the scale ONNX would derive from sizes, out/in).
    scales = [np.float32(o / n) if s else np.float32(f)
              for n, o, f, s in zip((h, w), (oh, ow), factors, by_size)]
    if any(math.floor(np.float32(n) * sc) != o for n, o, sc in zip((h, w), (oh, ow), scales)):
        raise _unsupported("interpolate", f"scale_factor {scale_factor} gives a different "
                           "output size in float32 (ONNX) than in float64; pass size= or "
                           "recompute_scale_factor=True")
    g.emit(out, "Resize", [g.name(x), "", g.const(np.array([1.0, 1.0, *scales],
                                                         dtype=np.float32), "scales")],
           **attrs)


_CONVERTERS: Dict[str, Callable] = {
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "linear": _linear,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "batch_norm": _batch_norm,
    "dropout": _identity_unless_training("dropout"),
    "dropout2d": _identity_unless_training("dropout2d"),
    "cutout": _cutout,
    "max_pool_dropout": _max_pool_dropout,
    "relu": _unary("Relu"),
    "add": _binary("Add"),
    "sub": _binary("Sub"),
    "mul": _binary("Mul"),
    "div": _binary("Div"),
    "affine": _affine,
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "sum": _reduce("ReduceSum"),
    "mean": _reduce("ReduceMean"),
    "reshape": _reshape,
    "flatten": _flatten,
    "cat": _cat,
    "pad": _pad,
    "center_crop": _center_crop,
    "interpolate": _interpolate,
}


# --- tracing --------------------------------------------------------------------

def _has_var(values) -> bool:
    return any(isinstance(v, _native.Var) or (isinstance(v, (list, tuple)) and _has_var(v))
               for v in values)


def _depends_on_input(g: _Graph, values) -> bool:
    return any(id(v) in g.traced or (isinstance(v, (list, tuple)) and _depends_on_input(g, v))
               for v in values)


def _wrap_native(g: _Graph, name: str, fn: Callable) -> Callable:
    convert = _CONVERTERS.get(name)

    def traced(*args, **kwargs):
        if threading.get_ident() != g.thread or not _has_var([*args, *kwargs.values()]):
            return fn(*args, **kwargs)  # another thread, or not a tensor op (e.g. a probe)
        if convert is None:
            raise _unsupported(name, "no ONNX converter")
        out = fn(*args, **kwargs)
        convert(g, out, *args, **kwargs)
        if not _depends_on_input(g, [*args, *kwargs.values()]):
            # computed from constants only: its values may be read in forward
            for o in (out if isinstance(out, tuple) else (out,)):
                g.traced.discard(id(o))
        return out

    return traced


@contextlib.contextmanager
def _tracing(g: _Graph, model):
    """Routes ``_native`` ops, module calls and value reads through ``g``;
    always restores the originals."""
    from .nn.module import Module

    saved_native = {n: getattr(_native, n) for n in dir(_native)
                    if not n.startswith("_") and n not in _NOT_OPS
                    and callable(getattr(_native, n))}
    module_names = {id(m): n for n, m in model.named_modules()}
    orig_call = Module.__call__
    orig = {k: Tensor.__dict__[k] for k in ("numpy", "item", "detach", "clone")}

    def call(self, *args, **kwargs):
        if threading.get_ident() != g.thread:
            return orig_call(self, *args, **kwargs)
        g.scope.append(module_names.get(id(self), type(self).__name__))
        try:
            return orig_call(self, *args, **kwargs)
        finally:
            g.scope.pop()

    def guard_read(fname):
        def read(self, *args, **kwargs):
            if threading.get_ident() == g.thread and id(self._v) in g.traced:
                raise _unsupported(
                    f"Tensor.{fname}", "the forward pass reads the values of a tensor that "
                    "depends on the input (data-dependent code cannot be traced)")
            return orig[fname](self, *args, **kwargs)
        return read

    def detach(self):
        y = orig["detach"](self)
        if threading.get_ident() == g.thread and id(self._v) in g.traced:
            g.alias(y._v, self._v)
        return y

    def clone(self):
        if threading.get_ident() == g.thread and id(self._v) in g.traced:
            return Tensor._wrap(self._v)  # immutable values: sharing is a copy
        return orig["clone"](self)

    try:
        for n, fn in saved_native.items():
            setattr(_native, n, _wrap_native(g, n, fn))
        Module.__call__ = call
        Tensor.numpy = guard_read("numpy")
        Tensor.item = guard_read("item")
        Tensor.detach = detach
        Tensor.clone = clone
        yield
    finally:
        for n, fn in saved_native.items():
            setattr(_native, n, fn)
        Module.__call__ = orig_call
        for k, fn in orig.items():
            setattr(Tensor, k, fn)


def _value_info(g: _Graph, name: str, shape: Tuple[int, ...], batch: Optional[int]):
    dims: List[Any] = list(shape)
    if g.dynamic_batch and dims and batch is not None and dims[0] == batch:
        dims[0] = "batch"
    return g.helper.make_tensor_value_info(name, g.onnx.TensorProto.FLOAT, dims)


def export(model, example_input: Any, path: str, opset: int = 17,
           input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
           dynamic_batch: bool = True):
    """Exports ``model`` to an ONNX file by tracing one forward pass.

    The model runs once on ``example_input`` in eval mode under
    ``cnnrs.no_grad()`` (its training flag is restored afterwards); every op
    becomes ONNX nodes, parameters and buffers become float32 initializers
    named by their ``state_dict`` keys (fixed tensors a module keeps as plain
    attributes, such as the CIFAR ResNets' shortcut weight, by their
    attribute path). The graph is checked with ``onnx.checker`` (full check,
    with shape inference) and written atomically (temporary file, fsync,
    rename).

    Args:
        model: a :class:`cnnrs.nn.Module` (or any callable built from cnnrs ops).
        example_input: a Tensor or array (converted to float32), or a tuple of
            them for several inputs.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version, 13 up to the installed ``onnx``'s newest.
            Default 17.
        input_names, output_names: graph input and output names, one per
            input and per returned tensor.
        dynamic_batch: make dim 0 of the inputs and outputs symbolic
            (``"batch"``), so the file runs on any batch size; reshapes that
            keep dim 0 copy it at run time.

    Shape:
        The graph's inputs have the example's shape (dim 0 symbolic with
        ``dynamic_batch``); spatial sizes are fixed at the traced ones.

    Returns:
        The ``onnx.ModelProto`` that was written.

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install 'cnnrs[onnx]'``).
        NotImplementedError: an op without an ONNX equivalent (named in the
            message): losses, locally connected layers, augmentation
            transforms, dropout in training mode, batch statistics,
            ``max_pool2d(return_indices=True)``, weighted max-pool dropout,
            or reading tensor values inside ``forward`` (data-dependent code).
        ValueError: a bad opset, or name counts that do not match.

    Example:
        >>> model = cnnrs.models.resnet18()
        >>> cnnrs.onnx.export(model, cnnrs.randn(1, 3, 224, 224), "resnet18.onnx")
        >>> import onnxruntime as ort
        >>> sess = ort.InferenceSession("resnet18.onnx", providers=["CPUExecutionProvider"])
        >>> y = sess.run(None, {"input": x})[0]

    Differences from ``torch.onnx.export``: tracing only (Python control flow
    is baked in, as with torch's tracer); spatial sizes are static; the
    initializers keep cnnrs's (= PyTorch's) state_dict names.
    """
    onnx = _import_onnx()
    from . import io as _io

    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= max_opset:
        raise ValueError(f"onnx.export: opset must be an int from 13 to {max_opset} "
                         f"(the installed onnx's newest), got {opset!r}")
    inputs = list(example_input) if isinstance(example_input, (tuple, list)) \
        else [example_input]
    inputs = [Tensor(x.numpy()) if isinstance(x, Tensor) else as_tensor(x) for x in inputs]
    input_names = [input_names] if isinstance(input_names, str) else list(input_names)
    output_names = [output_names] if isinstance(output_names, str) else list(output_names)
    if len(input_names) != len(inputs):
        raise ValueError(f"onnx.export: {len(inputs)} example input(s) but "
                         f"{len(input_names)} input name(s) {input_names}")

    g = _Graph(onnx, opset, bool(dynamic_batch))
    if hasattr(model, "named_modules"):
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if isinstance(p, Tensor):
                g.param_names.setdefault(id(p._v), name)
        for prefix, m in model.named_modules():
            for attr, v in vars(m).items():
                if isinstance(v, Tensor) and id(v._v) not in g.param_names:
                    g.const_names.setdefault(id(v._v), f"{prefix}.{attr}" if prefix else attr)
    for t, name in zip(inputs, input_names):
        g.used.add(name)
        g.bind(t._v, name)
    batch = inputs[0].shape[0] if inputs[0].ndim else None

    # Each module's own flag is restored afterwards (not model.train(mode),
    # which would overwrite sub-modules the user had put in another mode).
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    with _LOCK:
        try:
            if hasattr(model, "eval"):
                model.eval()
            with no_grad(), _tracing(g, model):
                result = model(*inputs)
        finally:
            for m, mode in modes:
                object.__setattr__(m, "training", mode)

    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    if not all(isinstance(o, Tensor) for o in outputs):
        raise _unsupported("forward", "the model must return a Tensor or a tuple of Tensors")
    if len(output_names) != len(outputs):
        raise ValueError(f"onnx.export: the model returns {len(outputs)} tensor(s) but "
                         f"{len(output_names)} output name(s) were given: {output_names}")
    graph_inputs = set(input_names)
    produced = {o for n in g.nodes for o in n.output}
    renames: Dict[str, str] = {}
    for t, oname in zip(outputs, output_names):
        src = g.name(t._v)
        if src in produced and src not in renames and src not in graph_inputs:
            renames[src] = oname
        else:  # an input, a constant, or a value already returned under another name
            g.nodes.append(g.helper.make_node("Identity", [src], [oname],
                                              name=f"/Identity_{oname}"))
    for n in g.nodes:
        for i, v in enumerate(n.input):
            if v in renames:
                n.input[i] = renames[v]
        for i, v in enumerate(n.output):
            if v in renames:
                n.output[i] = renames[v]

    total = sum(v.nbytes for v in g.inits.values())
    if total >= 2**31 - 2**24:
        raise ValueError(f"onnx.export: the weights take {total / 2**30:.2f} GiB; an ONNX file "
                         "holds at most 2 GiB (protobuf's limit; external data is not supported)")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = helper.make_graph(
        g.nodes, type(model).__name__,
        [_value_info(g, n, t.shape, batch) for t, n in zip(inputs, input_names)],
        [_value_info(g, n, t.shape, batch) for t, n in zip(outputs, output_names)],
        initializer=[numpy_helper.from_array(v, k) for k, v in g.inits.items()],
    )
    from . import __version__
    proto = helper.make_model(graph, producer_name="cnnrs", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, opset))
    data = proto.SerializeToString()
    onnx.checker.check_model(data, full_check=True)  # bytes: no second serialization
    _io._atomic_write(path, [data])
    return proto


def _ir_version_for(onnx, opset: int) -> int:
    """The lowest IR version that carries ``opset`` (so older runtimes load
    the file), from onnx's own table."""
    for row in onnx.helper.VERSION_TABLE:
        # rows: (release, ir_version, ai.onnx opset, ai.onnx.ml opset, ...)
        if row[2] >= opset:
            return row[1]
    return onnx.IR_VERSION

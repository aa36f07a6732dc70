#!/usr/bin/env python3
"""cnnrs benchmark harness: one JSON object per line on stdout, nothing else.

Usage:
    python benches/bench.py --suite kernels|models|all [--threads N]
                            [--repeats R] [--contend] [--quick]

Every row has the fields

    name, suite, pass ("fwd" | "fwd_bwd" | "infer" | "train_step"), threads,
    batch, ms (median), ms_min, ms_max, repeats, flops (per call), gflops,
    peak_gflops, frac_peak, torch_ms, speedup_vs_torch, ort_ms,
    speedup_vs_ort, gbps

``flops`` follows issue 3: a GEMM is 2*M*N*K; a convolution forward is
2*N*C_out*H_out*W_out*C_in/groups*kH*kW and its backward counts as twice
the forward (fwd_bwd = 3x forward). ``peak_gflops`` is measured in this
process, for this thread count, by the FMA probe shipped in cnnrs
(``cnnrs._native.peak_gflops``; widest SIMD family of the CPU).
``frac_peak = gflops / peak_gflops``. ``gbps`` is the memory traffic per
second for memory-bound rows (pooling: input read + output written, plus
grad_out read + grad_in written for fwd_bwd), null elsewhere; ``flops`` and
the rates derived from it are null where no flop count is meaningful.

``torch_*`` are measured when ``import torch`` works (same op through
``torch.nn.functional``, same thread count, same process); ``ort_*`` when
``onnx`` and ``onnxruntime`` import. Otherwise they are null, never guessed.

Rows whose cnnrs function does not exist yet are skipped with a note on
stderr. ``--contend`` runs a busy-loop process pinned to one CPU for the
whole run, to see how the library degrades when a core is taken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

try:  # run from a checkout without installing: `python benches/bench.py`
    import cnnrs
    from cnnrs import _native
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import cnnrs
    from cnnrs import _native


def note(msg: str) -> None:
    """Everything that is not a result goes to stderr."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- optional peers


def _import_torch():
    try:
        import torch  # noqa: F401

        return torch
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def _import_ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        return onnx, onnxruntime
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    median: float  # ms per call
    min: float
    max: float
    repeats: int


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 2,
              min_sample_s: float = 2e-3, min_warmup_s: float = 0.1) -> Timing:
    """Median/min/max milliseconds per call of ``fn``.

    Warm-up runs at least ``warmup`` calls and ``min_warmup_s`` seconds (at
    most 50 calls): right after the thread count changes, the first few
    multi-threaded calls run at about one core's speed while the idle core
    wakes up (measured: sgemm_1024 at 2 threads ~9 ms for ~5 calls, then
    4.5 ms). Each of the ``repeats`` samples runs ``fn`` enough times to last
    about ``min_sample_s`` (so sub-millisecond kernels are not dominated by
    the clock), and reports the mean per call of that sample.
    """
    t_warm = time.perf_counter()
    calls = 0
    while calls < warmup or (time.perf_counter() - t_warm < min_warmup_s and calls < 50):
        fn()
        calls += 1
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = max(1, min(1000, math.ceil(min_sample_s / max(one, 1e-9))))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)


# ---------------------------------------------------------------- rows


@dataclass
class ConvCase:
    name: str
    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    k: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1

    def out_hw(self) -> tuple:
        ho = (self.h + 2 * self.padding[0] - self.k[0]) // self.stride[0] + 1
        wo = (self.w + 2 * self.padding[1] - self.k[1]) // self.stride[1] + 1
        return ho, wo

    def fwd_flops(self) -> int:
        ho, wo = self.out_hw()
        return (2 * self.n * self.c_out * ho * wo * (self.c_in // self.groups)
                * self.k[0] * self.k[1])


# The kernel cases of issue 3 (NCHW float32).
CONV_CASES = [
    ConvCase("conv3x3", 8, 64, 64, 56, 56, (3, 3), padding=(1, 1)),
    ConvCase("conv3x3_b1", 1, 64, 64, 56, 56, (3, 3), padding=(1, 1)),
    ConvCase("conv1x1", 8, 256, 64, 56, 56, (1, 1)),
    ConvCase("conv7x7s2", 8, 3, 64, 224, 224, (7, 7), stride=(2, 2), padding=(3, 3)),
    ConvCase("conv1x3", 8, 64, 64, 56, 56, (1, 3), padding=(0, 1)),
    ConvCase("conv3x1", 8, 64, 64, 56, 56, (3, 1), padding=(1, 0)),
    ConvCase("conv5x5_lenet", 64, 1, 6, 32, 32, (5, 5)),
]


@dataclass
class PoolCase:
    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    stride: int

    def out_hw(self) -> tuple:
        return ((self.h - self.k) // self.stride + 1, (self.w - self.k) // self.stride + 1)

    def bytes(self, backward: bool) -> int:
        ho, wo = self.out_hw()
        x, y = self.n * self.c * self.h * self.w * 4, self.n * self.c * ho * wo * 4
        return x + y + ((y + x) if backward else 0)


POOL_CASES = [PoolCase("maxpool2x2", 8, 64, 112, 112, 2, 2)]

GEMM_CASES = [("sgemm_1024", 1024), ("sgemm_256", 256)]


def row(name, suite, pass_, threads, batch, t: Timing | None, flops, peak,
        torch_ms=None, ort_ms=None, nbytes=None) -> dict:
    ms = t.median if t else None
    gflops = flops / (ms * 1e6) if (flops and ms) else None
    return {
        "name": name,
        "suite": suite,
        "pass": pass_,
        "threads": threads,
        "batch": batch,
        "ms": ms,
        "ms_min": t.min if t else None,
        "ms_max": t.max if t else None,
        "repeats": t.repeats if t else None,
        "flops": flops,
        "gflops": gflops,
        "peak_gflops": peak,
        "frac_peak": gflops / peak if (gflops and peak) else None,
        "torch_ms": torch_ms,
        "speedup_vs_torch": torch_ms / ms if (torch_ms and ms) else None,
        "ort_ms": ort_ms,
        "speedup_vs_ort": ort_ms / ms if (ort_ms and ms) else None,
        "gbps": nbytes / (ms * 1e6) if (nbytes and ms) else None,
    }


def emit(r: dict) -> None:
    print(json.dumps(r), flush=True)


def _rounded(r: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


# ---------------------------------------------------------------- kernels suite


class Ctx:
    """What every runner needs: settings, peers, and this thread count's peak."""

    def __init__(self, args, threads: int, peak: float, torch, ort):
        self.args = args
        self.threads = threads
        self.peak = peak
        self.torch = torch
        self.ort = ort
        self.rng = np.random.default_rng(0)

    def timing(self, fn) -> Timing:
        return time_call(fn, self.args.repeats, warmup=1 if self.args.quick else 2)

    def randn(self, *shape) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)


def _peer(label: str, fn: Callable[[], float | None]) -> float | None:
    """Runs a peer measurement; a failure is a note and a null, never a guess."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        note(f"{label} failed ({type(e).__name__}: {e}); reported as null")
        return None


def run_gemm(ctx: Ctx) -> None:
    for name, size in GEMM_CASES:
        gemm_case(ctx, name, size)


def gemm_case(ctx: Ctx, name: str, size: int) -> None:
    a, b = ctx.randn(size, size), ctx.randn(size, size)
    out = np.empty((size, size), np.float32)
    got = _native.sgemm(a, b, out=out)
    # Guard against timing a wrong kernel: compare once with numpy.
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-30))
    if err > 1e-4:
        note(f"{name}: result differs from numpy (rel err {err:.2e}); row skipped")
        return
    t = ctx.timing(lambda: _native.sgemm(a, b, out=out))
    torch_ms = ort_ms = None
    torch = ctx.torch
    if torch is not None:
        def torch_gemm():
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            tc = torch.empty(size, size)
            with torch.no_grad():
                return ctx.timing(lambda: torch.mm(ta, tb, out=tc)).median

        torch_ms = _peer(f"torch {name}", torch_gemm)
    if ctx.ort is not None:
        def ort_gemm():
            onnx, _ = ctx.ort
            h, tp = onnx.helper, onnx.TensorProto
            graph = h.make_graph(
                [h.make_node("MatMul", ["A", "B"], ["C"])], "g",
                [h.make_tensor_value_info("A", tp.FLOAT, [size, size]),
                 h.make_tensor_value_info("B", tp.FLOAT, [size, size])],
                [h.make_tensor_value_info("C", tp.FLOAT, [size, size])])
            return _ort_time(ctx, graph, {"A": a, "B": b})

        ort_ms = _peer(f"onnxruntime {name}", ort_gemm)
    emit(_rounded(row(name, "kernels", "fwd", ctx.threads, None, t,
                      2 * size**3, ctx.peak, torch_ms, ort_ms)))


def _ort_time(ctx: Ctx, graph, feeds: dict) -> float:
    onnx, onnxruntime = ctx.ort
    model = onnx.helper.make_model(graph)
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = ctx.threads
    so.inter_op_num_threads = 1
    sess = onnxruntime.InferenceSession(model.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
    return ctx.timing(lambda: sess.run(None, feeds)).median


def _conv_fn():
    F = cnnrs.nn.functional
    return getattr(F, "conv2d", None)


def run_conv(ctx: Ctx) -> None:
    conv2d = _conv_fn()
    if conv2d is None:
        note("cnnrs.nn.functional.conv2d does not exist yet: conv rows skipped")
        return
    for case in CONV_CASES:
        conv_case(ctx, conv2d, case)
    convt_case(ctx)


def convt_case(ctx: Ctx) -> None:
    """`convT2x2s2` (issue 5): N=8, 128 -> 64 channels, 28x28 -> 56x56, kernel
    2, stride 2. FLOPs are the adjoint convolution's: 2*N*C_in*H*W*C_out*kH*kW."""
    F = cnnrs.nn.functional
    name, n, c_in, c_out, h, w, k = "convT2x2s2", 8, 128, 64, 28, 28, 2
    x = ctx.randn(n, c_in, h, w)
    wt = ctx.randn(c_in, c_out, k, k) * 0.1
    b = ctx.randn(c_out)
    g = ctx.randn(n, c_out, h * k, w * k)
    flops = 2 * n * c_in * h * w * c_out * k * k
    tx, tw, tb = cnnrs.tensor(x), cnnrs.tensor(wt), cnnrs.tensor(b)
    gx, gw, gb = (cnnrs.tensor(v, requires_grad=True) for v in (x, wt, b))
    gg = cnnrs.tensor(g)

    def fwd():
        with cnnrs.no_grad():
            return F.conv_transpose2d(tx, tw, tb, stride=k)

    def fwd_bwd():
        for p in (gx, gw, gb):
            p.grad = None
        F.conv_transpose2d(gx, gw, gb, stride=k).backward(gg)

    torch_fwd = torch_fb = ort_fwd = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        ttx, ttw, ttb, ttg = (torch.from_numpy(v) for v in (x, wt, b, g))
        pgx, pgw, pgb = (v.clone().requires_grad_(True) for v in (ttx, ttw, ttb))

        def t_fwd():
            with torch.no_grad():
                return tf.conv_transpose2d(ttx, ttw, ttb, stride=k)

        def t_fb():
            for p in (pgx, pgw, pgb):
                p.grad = None
            tf.conv_transpose2d(pgx, pgw, pgb, stride=k).backward(ttg)

        torch_fwd = _peer("torch convT fwd", lambda: ctx.timing(t_fwd).median)
        torch_fb = _peer("torch convT fwd_bwd", lambda: ctx.timing(t_fb).median)
    if ctx.ort is not None:
        def ort_convt():
            onnx, _ = ctx.ort
            hp, tp = onnx.helper, onnx.TensorProto
            node = hp.make_node("ConvTranspose", ["X", "W", "B"], ["Y"],
                                kernel_shape=[k, k], strides=[k, k])
            graph = hp.make_graph(
                [node], "g", [hp.make_tensor_value_info("X", tp.FLOAT, list(x.shape))],
                [hp.make_tensor_value_info("Y", tp.FLOAT, [n, c_out, h * k, w * k])],
                initializer=[onnx.numpy_helper.from_array(wt, "W"),
                             onnx.numpy_helper.from_array(b, "B")])
            return _ort_time(ctx, graph, {"X": x})

        ort_fwd = _peer(f"onnxruntime {name}", ort_convt)
    for pass_, fn, fl, tms, oms in (("fwd", fwd, flops, torch_fwd, ort_fwd),
                                    ("fwd_bwd", fwd_bwd, 3 * flops, torch_fb, None)):
        try:
            t = ctx.timing(fn)
        except Exception as e:  # noqa: BLE001
            note(f"{name} {pass_}: cnnrs raised {type(e).__name__}: {e}; row skipped")
            continue
        emit(_rounded(row(name, "kernels", pass_, ctx.threads, n, t, fl, ctx.peak, tms, oms)))


def conv_case(ctx: Ctx, conv2d, case: ConvCase) -> None:
    x = ctx.randn(case.n, case.c_in, case.h, case.w)
    w = ctx.randn(case.c_out, case.c_in // case.groups, *case.k) * 0.1
    b = ctx.randn(case.c_out)
    ho, wo = case.out_hw()
    g = ctx.randn(case.n, case.c_out, ho, wo)
    kw = dict(stride=case.stride, padding=case.padding, groups=case.groups)
    fwd_flops = case.fwd_flops()
    tx, tw, tb = cnnrs.tensor(x), cnnrs.tensor(w), cnnrs.tensor(b)

    def fwd():
        with cnnrs.no_grad():
            return conv2d(tx, tw, tb, **kw)

    gx = cnnrs.tensor(x, requires_grad=True)
    gw = cnnrs.tensor(w, requires_grad=True)
    gb = cnnrs.tensor(b, requires_grad=True)
    gg = cnnrs.tensor(g)

    def fwd_bwd():
        for p in (gx, gw, gb):
            p.grad = None
        conv2d(gx, gw, gb, **kw).backward(gg)

    torch_fwd = torch_fb = ort_fwd = None
    if ctx.torch is not None:
        torch_fwd, torch_fb = _torch_conv(ctx, x, w, b, g, kw)
    if ctx.ort is not None:
        ort_fwd = _peer(f"onnxruntime {case.name}", lambda: _ort_conv(ctx, case, x, w, b))
    for pass_, fn, flops, tms, oms in (("fwd", fwd, fwd_flops, torch_fwd, ort_fwd),
                                       ("fwd_bwd", fwd_bwd, 3 * fwd_flops, torch_fb, None)):
        try:
            t = ctx.timing(fn)
        except Exception as e:  # noqa: BLE001 - a broken op must not end the run
            note(f"{case.name} {pass_}: cnnrs raised {type(e).__name__}: {e}; row skipped")
            continue
        emit(_rounded(row(case.name, "kernels", pass_, ctx.threads, case.n, t, flops,
                          ctx.peak, tms, oms)))


def _torch_conv(ctx: Ctx, x, w, b, g, kw):
    torch = ctx.torch
    F = torch.nn.functional
    tx, tw, tb, tg = (torch.from_numpy(v) for v in (x, w, b, g))

    def fwd():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, **kw)

    gx, gw, gb = (v.clone().requires_grad_(True) for v in (tx, tw, tb))

    def fwd_bwd():
        for p in (gx, gw, gb):
            p.grad = None
        F.conv2d(gx, gw, gb, **kw).backward(tg)

    return (_peer("torch conv2d fwd", lambda: ctx.timing(fwd).median),
            _peer("torch conv2d fwd_bwd", lambda: ctx.timing(fwd_bwd).median))


def _ort_conv(ctx: Ctx, case: ConvCase, x, w, b) -> float:
    onnx, _ = ctx.ort
    h, tp = onnx.helper, onnx.TensorProto
    ho, wo = case.out_hw()
    node = h.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=list(case.k),
                       strides=list(case.stride), group=case.groups,
                       pads=[case.padding[0], case.padding[1], case.padding[0], case.padding[1]])
    graph = h.make_graph(
        [node], "g",
        [h.make_tensor_value_info("X", tp.FLOAT, list(x.shape))],
        [h.make_tensor_value_info("Y", tp.FLOAT, [case.n, case.c_out, ho, wo])],
        initializer=[onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(b, "B")])
    return _ort_time(ctx, graph, {"X": x})


def run_pool(ctx: Ctx) -> None:
    max_pool2d = getattr(cnnrs.nn.functional, "max_pool2d", None)
    if max_pool2d is None:
        note("cnnrs.nn.functional.max_pool2d does not exist yet: pooling rows skipped")
        return
    for case in POOL_CASES:
        pool_case(ctx, max_pool2d, case)


def pool_case(ctx: Ctx, max_pool2d, case: PoolCase) -> None:
    x = ctx.randn(case.n, case.c, case.h, case.w)
    ho, wo = case.out_hw()
    g = ctx.randn(case.n, case.c, ho, wo)
    tx = cnnrs.tensor(x)

    def fwd():
        with cnnrs.no_grad():
            return max_pool2d(tx, case.k, case.stride)

    gx = cnnrs.tensor(x, requires_grad=True)
    gg = cnnrs.tensor(g)

    def fwd_bwd():
        gx.grad = None
        max_pool2d(gx, case.k, case.stride).backward(gg)

    torch_fwd = torch_fb = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        ttx, ttg = torch.from_numpy(x), torch.from_numpy(g)
        tgx = ttx.clone().requires_grad_(True)

        def t_fwd():
            with torch.no_grad():
                return tf.max_pool2d(ttx, case.k, case.stride)

        def t_fb():
            tgx.grad = None
            tf.max_pool2d(tgx, case.k, case.stride).backward(ttg)

        torch_fwd = _peer("torch max_pool2d fwd", lambda: ctx.timing(t_fwd).median)
        torch_fb = _peer("torch max_pool2d fwd_bwd", lambda: ctx.timing(t_fb).median)
    for pass_, fn, tms, bwd in (("fwd", fwd, torch_fwd, False),
                                ("fwd_bwd", fwd_bwd, torch_fb, True)):
        try:
            t = ctx.timing(fn)
        except Exception as e:  # noqa: BLE001
            note(f"{case.name} {pass_}: cnnrs raised {type(e).__name__}: {e}; row skipped")
            continue
        emit(_rounded(row(case.name, "kernels", pass_, ctx.threads, case.n, t, None,
                          ctx.peak, tms, None, nbytes=case.bytes(bwd))))


# ---------------------------------------------------------------- models suite

# (row name, factory in cnnrs.models, factory kwargs, input shape without
# batch, [(pass, batch), ...]). Issue 5 quotes PyTorch 2.13 on a 2-core Zen3
# for the unet rows: unet16 infer b1 26-31 ms, train_step b8 440-740 ms;
# unet64 infer b1 0.9-1.45 s (2 threads).
MODEL_CASES = [
    ("resnet18_cifar", "resnet18", {"num_classes": 10}, (3, 32, 32),
     [("infer", 1), ("infer", 32), ("train_step", 32)]),
    ("resnet50", "resnet50", {}, (3, 224, 224), [("infer", 1)]),
    ("lenet5", "lenet5", {}, (1, 32, 32), [("infer", 1), ("infer", 256), ("train_step", 64)]),
    ("unet16", "unet", {"base_width": 16}, (1, 128, 128), [("infer", 1), ("train_step", 8)]),
    ("unet64", "unet", {"base_width": 64, "padding": "same"}, (1, 256, 256), [("infer", 1)]),
]


def run_models(ctx: Ctx) -> None:
    models = cnnrs.models
    for name, factory, kwargs, shape, runs in MODEL_CASES:
        make = getattr(models, factory, None)
        if make is None:
            note(f"cnnrs.models.{factory} does not exist: {name} rows skipped")
            continue
        model = make(**kwargs)
        # Forward FLOPs per image from the per-layer counter (conv and linear
        # layers, 2 per multiply-add); a training step counts 3x forward.
        per_image = models.summary(model, (1, *shape)).total_flops
        for pass_, batch in runs:
            model_case(ctx, name, model, shape, batch, pass_, per_image)


def model_case(ctx: Ctx, name: str, model, shape: tuple, batch: int, pass_: str,
               per_image_flops: int) -> None:
    import cnnrs.nn.functional as F
    from cnnrs.optim import SGD

    x = cnnrs.tensor(ctx.randn(batch, *shape))
    if pass_ == "infer":
        model.eval()

        def fn():
            with cnnrs.no_grad():
                return model(x)
        flops = per_image_flops * batch
    else:
        model.train()
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        with cnnrs.no_grad():
            out_shape = model(x).shape
        # Class labels per sample, or per pixel for segmentation logits (N, C, H, W).
        target = ctx.rng.integers(0, out_shape[1], (batch,) + tuple(out_shape[2:]))

        def fn():
            opt.zero_grad()
            F.cross_entropy(model(x), target).backward()
            opt.step()
        flops = 3 * per_image_flops * batch
    try:
        t = ctx.timing(fn)
    except Exception as e:  # noqa: BLE001
        note(f"{name} {pass_} b{batch}: {type(e).__name__}: {e}; row skipped")
        return
    emit(_rounded(row(name, "models", pass_, ctx.threads, batch, t, flops, ctx.peak)))


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def contention(enabled: bool):
    """A busy-loop child pinned to one CPU (the last one we may run on)."""
    if not enabled:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    note(f"--contend: busy loop pid {proc.pid} pinned to CPU {cpu}")
    time.sleep(0.2)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure_peak(threads: int, contended: bool) -> tuple[float, list[float]]:
    """The FMA peak of ``threads`` threads: the best of several probes.

    On a shared machine a probe can land while another process holds a
    core and read half the figure; five in a row have (measured here: a
    2-thread peak of 289 against 533 one run later, which made every
    2-thread row's ``frac_peak`` read above 1). So with more than one
    thread, probing goes on (up to 20 more) until the best reaches 3/4 of
    ``threads`` times the 1-thread peak, unless ``--contend`` takes a core
    on purpose.
    """
    probes = [_native.peak_gflops(threads) for _ in range(5)]
    if threads > 1 and not contended:
        want = 0.75 * threads * _native.peak_gflops(1)
        while max(probes) < want and len(probes) < 25:
            probes.append(_native.peak_gflops(threads))
        if max(probes) < want:
            note(f"threads={threads}: every peak probe read below {want:.0f} GFLOP/s "
                 "(another process holds a core?); frac_peak of these rows is inflated")
    return max(probes), probes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=["kernels", "models", "all"], default="kernels")
    ap.add_argument("--threads", type=int, default=None,
                    help="thread count (default: 1 and every CPU this process may use)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed samples per row (default 10, --quick 3)")
    ap.add_argument("--contend", action="store_true",
                    help="run a busy loop pinned to one CPU during the measurements")
    ap.add_argument("--quick", action="store_true", help="fewer samples (smoke test)")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be at least 1")
    ncpu = len(os.sched_getaffinity(0))
    thread_counts = [args.threads] if args.threads else sorted({1, ncpu})

    torch = _import_torch()
    ort = _import_ort()
    note(f"cnnrs {cnnrs.__version__}, SIMD {_native.simd_family()} "
         f"(available: {', '.join(_native.simd_available())}); "
         f"torch: {torch.__version__ if torch else 'not importable'}; "
         f"onnxruntime: {ort[1].__version__ if ort else 'not importable'}")

    with contention(args.contend):
        for threads in thread_counts:
            cnnrs.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            peak, probes = measure_peak(threads, args.contend)
            note(f"threads={threads}: measured FMA peak {peak:.1f} GFLOP/s "
                 f"(best of {', '.join(f'{p:.0f}' for p in probes)})")
            ctx = Ctx(args, threads, peak, torch, ort)
            if args.suite in ("kernels", "all"):
                run_gemm(ctx)
                run_conv(ctx)
                run_pool(ctx)
            if args.suite in ("models", "all"):
                run_models(ctx)
            switches, serial = _native.serial_fallback()
            note(f"threads={threads}: the pool fell back to serial execution {switches} "
                 f"time(s) so far (serial at the end: {serial}; see README, Benchmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark harness: output format and the flop/byte formulas (no
timing assertions: it only has to run and report honestly)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "benches", "bench.py")
FIELDS = ["name", "suite", "pass", "threads", "batch", "ms", "ms_min", "ms_max", "repeats",
          "flops", "gflops", "peak_gflops", "frac_peak", "torch_ms", "speedup_vs_torch",
          "ort_ms", "speedup_vs_ort", "gbps"]


def _load():
    spec = importlib.util.spec_from_file_location("cnnrs_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cnnrs_bench"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _importable(name):
    return importlib.util.find_spec(name) is not None


def _run(*args):
    p = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True,
                       timeout=300, check=True)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    return rows, p.stderr


def test_flop_and_byte_formulas():
    b = _load()
    cases = {c.name: c for c in b.CONV_CASES}
    # 2*N*C_out*H_out*W_out*C_in/groups*kH*kW
    assert cases["conv3x3"].fwd_flops() == 2 * 8 * 64 * 56 * 56 * 64 * 9
    assert cases["conv3x3_b1"].fwd_flops() == 2 * 1 * 64 * 56 * 56 * 64 * 9
    assert cases["conv1x1"].fwd_flops() == 2 * 8 * 64 * 56 * 56 * 256
    assert cases["conv7x7s2"].out_hw() == (112, 112)
    assert cases["conv7x7s2"].fwd_flops() == 2 * 8 * 64 * 112 * 112 * 3 * 49
    assert cases["conv1x3"].out_hw() == (56, 56) and cases["conv3x1"].out_hw() == (56, 56)
    assert cases["conv5x5_lenet"].out_hw() == (28, 28)
    assert cases["conv5x5_lenet"].fwd_flops() == 2 * 64 * 6 * 28 * 28 * 1 * 25
    pool = b.POOL_CASES[0]
    assert pool.out_hw() == (56, 56)
    x, y = 8 * 64 * 112 * 112 * 4, 8 * 64 * 56 * 56 * 4
    assert pool.bytes(False) == x + y and pool.bytes(True) == 2 * (x + y)
    r = b.row("r", "kernels", "fwd", 2, 8, b.Timing(2.0, 1.0, 3.0, 5), 4e9, 100.0,
              torch_ms=4.0)
    assert list(r) == FIELDS
    assert r["gflops"] == pytest.approx(2000.0) and r["frac_peak"] == pytest.approx(20.0)
    assert r["speedup_vs_torch"] == pytest.approx(2.0) and r["speedup_vs_ort"] is None


def test_time_call_counts_samples():
    b = _load()
    calls = []
    t = b.time_call(lambda: calls.append(1), repeats=4, warmup=2, min_sample_s=0.0,
                    min_warmup_s=0.0)
    assert t.repeats == 4 and t.min <= t.median <= t.max
    assert len(calls) == 2 + 1 + 4  # warm-up, calibration, one call per sample
    # A time-based warm-up keeps calling (up to 50 calls) for min_warmup_s.
    calls.clear()
    b.time_call(lambda: calls.append(1), repeats=1, warmup=2, min_sample_s=0.0,
                min_warmup_s=10.0)
    assert len(calls) == 50 + 1 + 1


@pytest.mark.parametrize("extra", [[], ["--contend"]])
def test_harness_prints_only_json_rows(extra):
    rows, err = _run("--suite", "all", "--quick", "--threads", "1", "--repeats", "2", *extra)
    names = {(r["name"], r["pass"]) for r in rows}
    assert {("sgemm_1024", "fwd"), ("sgemm_256", "fwd")} <= names
    assert {("unet16", "infer"), ("unet16", "train_step"), ("unet64", "infer")} <= names
    assert {(r["name"], r["batch"]) for r in rows if r["name"].startswith("unet")} == \
        {("unet16", 1), ("unet16", 8), ("unet64", 1)}
    has_torch = _importable("torch")
    for r in rows:
        assert list(r) == FIELDS
        assert r["threads"] == 1 and r["repeats"] == 2
        assert r["ms_min"] <= r["ms"] <= r["ms_max"]
        assert r["peak_gflops"] > 0
        if r["flops"] is not None:
            assert r["gflops"] == pytest.approx(r["flops"] / (r["ms"] * 1e6), rel=1e-3)
            assert r["frac_peak"] == pytest.approx(r["gflops"] / r["peak_gflops"], rel=1e-3,
                                                   abs=1e-4)  # rounded to 4 places
        if not has_torch:
            assert r["torch_ms"] is None and r["speedup_vs_torch"] is None
        if not (_importable("onnxruntime") and _importable("onnx")):
            assert r["ort_ms"] is None and r["speedup_vs_ort"] is None
    assert "measured FMA peak" in err
    if extra:
        assert "--contend: busy loop" in err


def test_bad_arguments_exit_nonzero():
    p = subprocess.run([sys.executable, BENCH, "--threads", "0"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "--threads must be at least 1" in p.stderr
    assert p.stdout == ""

"""The GEMM core through `_native.sgemm`, the SIMD family switch and the peak
probe. The oracle is numpy in float64."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnrs
from cnnrs import _native

EDGE = [1, 2, 3, 5, 7, 13, 16, 17, 31, 33, 97, 193, 257]


def ref(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


def check(c, a, b):
    k = a.shape[1]
    # Sums of k products of unit normals: rounding grows like sqrt(k).
    np.testing.assert_allclose(c, ref(a, b), rtol=1e-4, atol=1e-5 * max(1.0, np.sqrt(k)) * 4)


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_match_numpy(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        m, n, k = (int(rng.choice(EDGE)) if rng.random() < 0.5 else int(rng.integers(1, 120))
                   for _ in range(3))
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = _native.sgemm(a, b)
        assert c.shape == (m, n) and c.dtype == np.float32
        check(c, a, b)


def test_layouts_transposed_and_strided_inputs():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((67, 45), dtype=np.float32)
    b = rng.standard_normal((45, 38), dtype=np.float32)
    # Fortran order (read in place as a transposed view), and views that are
    # neither C nor F contiguous (copied first).
    for aa in (a, np.asfortranarray(a), a.T.copy().T):
        for bb in (b, np.asfortranarray(b)):
            check(_native.sgemm(aa, bb), aa, bb)
    big = rng.standard_normal((140, 95), dtype=np.float32)
    check(_native.sgemm(big[::2, 1::2], big[1:95:2, ::3][:, :20]), big[::2, 1::2],
          big[1:95:2, ::3][:, :20])


@pytest.mark.parametrize("threads", [1, 2])
def test_big_products_split_over_threads(threads):
    old = cnnrs.get_num_threads()
    cnnrs.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads)
        for m, n, k in [(300, 257, 301), (13, 1000, 513), (1000, 7, 300)]:
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            check(_native.sgemm(a, b), a, b)
    finally:
        cnnrs.set_num_threads(old)


def test_out_is_filled_and_returned():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20, 30), dtype=np.float32)
    b = rng.standard_normal((30, 40), dtype=np.float32)
    out = np.full((20, 40), np.nan, np.float32)
    r = _native.sgemm(a, b, out=out)
    assert r is out
    check(out, a, b)


def test_empty_dimensions():
    z = _native.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(z, np.zeros((3, 4), np.float32))
    assert _native.sgemm(np.zeros((0, 5), np.float32), np.ones((5, 2), np.float32)).shape == (0, 2)


def test_bad_inputs():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="sgemm: a must be a 2-D float32"):
        _native.sgemm(a.astype(np.float64), a.T)
    with pytest.raises(TypeError, match="sgemm: b must be a 2-D float32"):
        _native.sgemm(a, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="sgemm: a must be a 2-D float32"):
        _native.sgemm([[1.0]], a)
    with pytest.raises(ValueError, match=r"sgemm: inner dimensions differ: a \(3, 4\), b \(3, 4\)"):
        _native.sgemm(a, a)
    with pytest.raises(ValueError, match=r"sgemm: out must be C-contiguous with shape \(3, 3\)"):
        _native.sgemm(a, a.T.copy(), out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="sgemm: out must be C-contiguous"):
        _native.sgemm(a, a.T.copy(), out=np.empty((3, 3), np.float32, order="F"))
    with pytest.raises(TypeError, match="sgemm: out must be a 2-D float32"):
        _native.sgemm(a, a.T.copy(), out=np.empty((3, 3), np.float64))
    ro = np.empty((3, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="sgemm: out is not writeable"):
        _native.sgemm(a, a.T.copy(), out=ro)
    # `out` aliasing an input is refused rather than read while written.
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="sgemm: out is not writeable or is in use"):
        _native.sgemm(sq, sq, out=sq)


def test_simd_family_reporting():
    avail = _native.simd_available()
    assert avail[0] == "scalar"
    assert set(avail) <= {"scalar", "avx2", "avx512"}
    assert _native.simd_family() in avail


def test_peak_probe():
    p1 = _native.peak_gflops(1)
    assert np.isfinite(p1) and p1 > 0
    assert _native.peak_gflops(1, "scalar") > 0
    with pytest.raises(ValueError, match="peak_gflops: threads must be at least 1"):
        _native.peak_gflops(0)
    with pytest.raises(ValueError, match="peak_gflops: family must be one of"):
        _native.peak_gflops(1, "sse9")


_CHILD = """
import json, sys
import numpy as np
from cnnrs import _native
rng = np.random.default_rng(0)
a = rng.standard_normal((61, 517), dtype=np.float32)
b = rng.standard_normal((517, 45), dtype=np.float32)
c = _native.sgemm(a, b)
ref = a.astype(np.float64) @ b.astype(np.float64)
print(json.dumps({"family": _native.simd_family(),
                  "err": float(np.max(np.abs(c - ref))),
                  "bits": c.tobytes().hex()}))
"""


def _child(env_value):
    env = dict(os.environ)
    env.pop("CNNRS_SIMD", None)
    if env_value is not None:
        env["CNNRS_SIMD"] = env_value
    p = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                       text=True, timeout=120, check=True)
    return json.loads(p.stdout), p.stderr


def test_cnnrs_simd_env_forces_each_family():
    avail = _native.simd_available()
    best = avail[-1]
    results = {}
    for fam in ["scalar", "avx2", "avx512"]:
        out, _ = _child(fam)
        # An unavailable family falls back to the widest available narrower one.
        expect = fam if fam in avail else [f for f in avail if
                                           ["scalar", "avx2", "avx512"].index(f)
                                           <= ["scalar", "avx2", "avx512"].index(fam)][-1]
        assert out["family"] == expect
        assert out["err"] < 1e-3
        results[out["family"]] = out["bits"]
    default, _ = _child(None)
    assert default["family"] == best
    assert default["bits"] == results[best]
    # Scalar (separate multiply and add) and the FMA kernels round differently.
    for fam, bits in results.items():
        if fam != "scalar":
            assert bits != results["scalar"], fam
    bogus, err = _child("sse9")
    assert bogus["family"] == best
    assert "CNNRS_SIMD" in err and "sse9" in err

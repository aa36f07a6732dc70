"""F.max_pool2d and nn.MaxPool2d against an independent numpy float64 max pool."""

import math

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn


def out_size(n, k, s, p, d, ceil):
    """PyTorch's pooling_output_shape."""
    num = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(num / s) if ceil else math.floor(num / s)) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def np_max_pool2d(x, k, s, p, d, ceil):
    """Returns (out, idx) in float64 / int64; scan order row-major per window,
    a strictly greater value or any NaN replaces the current pick, the default
    pick is the first in-bounds tap; -1 / -inf for windows of padding only."""
    n, c, h, w = x.shape
    ho = out_size(h, k[0], s[0], p[0], d[0], ceil)
    wo = out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.full((n, c, ho, wo), -np.inf)
    idx = np.full((n, c, ho, wo), -1, dtype=np.int64)
    for oh in range(ho):
        for ow in range(wo):
            taps = [(oh * s[0] - p[0] + i * d[0], ow * s[1] - p[1] + j * d[1])
                    for i in range(k[0]) for j in range(k[1])]
            taps = [(a, b) for a, b in taps if 0 <= a < h and 0 <= b < w]
            for ni in range(n):
                for ci in range(c):
                    best, bi = -np.inf, -1
                    for a, b in taps:
                        v = x[ni, ci, a, b]
                        if bi < 0:
                            bi = a * w + b
                        if v > best or np.isnan(v):
                            best, bi = v, a * w + b
                    out[ni, ci, oh, ow] = best
                    idx[ni, ci, oh, ow] = bi
    return out, idx


def np_backward(g, idx, in_shape):
    gi = np.zeros(in_shape).reshape(in_shape[0], in_shape[1], -1)
    for ni in range(in_shape[0]):
        for ci in range(in_shape[1]):
            for o, i in zip(idx[ni, ci].ravel(), g[ni, ci].ravel()):
                if o >= 0:
                    gi[ni, ci, o] += i
    return gi.reshape(in_shape)


def random_case(rng):
    while True:
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        ceil = bool(rng.integers(0, 2))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
                 int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        if all(out_size(shape[2 + i], k[i], s[i], p[i], d[i], ceil) >= 1 for i in range(2)):
            return shape, k, s, p, d, ceil


@pytest.mark.parametrize("seed", range(12))
def test_forward_and_indices_match_numpy(seed):
    rng = np.random.default_rng(seed)
    for _ in range(15):
        shape, k, s, p, d, ceil = random_case(rng)
        # Small integers: many ties.
        x = rng.integers(-2, 3, size=shape).astype(np.float32)
        if seed % 3 == 0:
            x[rng.random(shape) < 0.1] = np.nan
        want, want_idx = np_max_pool2d(x.astype(np.float64), k, s, p, d, ceil)
        y, idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
        assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
        np.testing.assert_array_equal(y.numpy(), want.astype(np.float32))
        np.testing.assert_array_equal(idx, want_idx)
        y2 = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
        np.testing.assert_array_equal(y2.numpy(), want.astype(np.float32))


@pytest.mark.parametrize("seed", range(6))
def test_backward_matches_numpy_and_finite_differences(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(6):
        shape, k, s, p, d, ceil = random_case(rng)
        n = int(np.prod(shape))
        # Distinct values 0.05 apart: a step of 1e-4 never changes an argmax.
        x = (rng.permutation(n) * 0.05 - 1.0).reshape(shape).astype(np.float32)
        x64 = x.astype(np.float64)
        want, idx = np_max_pool2d(x64, k, s, p, d, ceil)
        g = rng.standard_normal(want.shape).astype(np.float32)

        xt = cnnrs.tensor(x, requires_grad=True)
        y = F.max_pool2d(xt, k, s, p, d, ceil_mode=ceil)
        y.backward(g)
        grad = xt.grad.numpy()
        np.testing.assert_allclose(grad, np_backward(g.astype(np.float64), idx, shape),
                                   rtol=1e-6, atol=1e-6)

        # Windows that hold only padding are a constant -inf: no gradient.
        finite = np.isfinite(want)

        def loss(v, k=k, s=s, p=p, d=d, ceil=ceil, finite=finite, g=g):
            out, _ = np_max_pool2d(v, k, s, p, d, ceil)
            return float((out[finite] * g[finite]).sum())

        h = 1e-4
        num = np.zeros(n)
        flat = x64.ravel()
        for i in range(n):
            e = np.zeros(n)
            e[i] = h
            num[i] = (loss((flat + e).reshape(shape)) - loss((flat - e).reshape(shape))) / (2 * h)
        np.testing.assert_allclose(grad.ravel(), num, rtol=1e-4, atol=1e-5)


def test_overlapping_windows_accumulate_gradient():
    # 3x3 stride 1 over a plane whose maximum is in the centre: every window
    # picks it.
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 1, 1] = 5.0
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, 3, stride=1)
    assert y.shape == (1, 1, 2, 2)
    y.sum().backward()
    want = np.zeros_like(x)
    want[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(xt.grad.numpy(), want)


def test_fast_2x2_and_big_parallel_inputs_match_numpy():
    rng = np.random.default_rng(7)
    for shape, k, s, p in [((2, 3, 8, 10), 2, 2, 0), ((2, 3, 9, 7), 2, 2, 0),
                           ((4, 16, 40, 36), 2, 2, 0), ((4, 16, 40, 36), 3, 2, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        for ceil in (False, True):
            want, want_idx = np_max_pool2d(x.astype(np.float64), (k, k), (s, s), (p, p),
                                           (1, 1), ceil)
            y, idx = F.max_pool2d(x, k, s, p, ceil_mode=ceil, return_indices=True)
            np.testing.assert_array_equal(y.numpy(), want.astype(np.float32))
            np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("n,k,s,p,d,ceil,want", [
    (5, 2, 2, 0, 1, False, 2), (5, 2, 2, 0, 1, True, 3), (4, 2, 2, 0, 1, True, 2),
    (6, 3, 2, 0, 1, True, 3), (5, 2, 3, 1, 1, True, 2), (112, 3, 2, 1, 1, False, 56),
    (7, 3, 2, 1, 2, False, 3),
])
def test_output_size_matches_pytorch_values(n, k, s, p, d, ceil, want):
    assert out_size(n, k, s, p, d, ceil) == want
    y = F.max_pool2d(np.zeros((1, 1, n, n), np.float32), k, s, p, d, ceil_mode=ceil)
    assert y.shape == (1, 1, want, want)


def test_ties_first_and_nan_wins():
    x = np.full((1, 1, 2, 2), 3.0, dtype=np.float32)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.ravel().tolist() == [0]
    x = np.array([[[[1.0, np.nan], [5.0, np.nan]]]], dtype=np.float32)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y.numpy()).all() and idx.ravel().tolist() == [3]


def test_padding_only_window_is_minus_inf_with_index_minus_one():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    y, idx = F.max_pool2d(x, (1, 2), stride=1, padding=(0, 1), dilation=(1, 5),
                          return_indices=True)
    assert y.numpy().ravel().tolist() == [-np.inf]
    assert idx.ravel().tolist() == [-1]


def test_module_matches_functional_and_repr():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
    m = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(m(x).numpy(),
                                  F.max_pool2d(x, 3, 2, 1, ceil_mode=True).numpy())
    assert repr(m) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)"
    assert nn.MaxPool2d(2).stride == 2
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    assert y.shape == idx.shape == (2, 4, 5, 4)
    assert list(m.parameters()) == []


def test_stride_defaults_to_kernel_and_accepts_pairs():
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 9)).astype(np.float32)
    a = F.max_pool2d(x, (2, 3))
    b = F.max_pool2d(x, [2, 3], stride=(2, 3))
    c = F.max_pool2d(x, (2, 3), stride=[])
    assert a.shape == (1, 2, 4, 3)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), c.numpy())


@pytest.mark.parametrize("shape,kwargs,match", [
    ((2, 8, 8), dict(kernel_size=2), r"max_pool2d: expected a 4-D input .* \(2, 8, 8\)"),
    ((1, 1, 2, 8, 8), dict(kernel_size=2), r"max_pool2d: expected a 4-D input"),
    ((1, 1, 8, 8), dict(kernel_size=0), r"max_pool2d: kernel_size must be greater than zero"),
    ((1, 1, 8, 8), dict(kernel_size=2, stride=(1, 0)),
     r"max_pool2d: stride must be greater than zero"),
    ((1, 1, 8, 8), dict(kernel_size=2, dilation=0),
     r"max_pool2d: dilation must be greater than zero"),
    ((1, 1, 8, 8), dict(kernel_size=3, padding=2),
     r"max_pool2d: padding should be at most half of kernel_size"),
    ((1, 1, 2, 2), dict(kernel_size=3), r"max_pool2d: output size is too small.*\(1, 1, 2, 2\)"),
    ((1, 1, 8, 8), dict(kernel_size=-2), r"max_pool2d: kernel_size must be non-negative"),
    ((1, 1, 8, 8), dict(kernel_size=(2, 2, 2)),
     r"max_pool2d: kernel_size must be an int or a pair"),
])
def test_value_errors(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.max_pool2d(np.zeros(shape, np.float32), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2.0), dict(kernel_size=True),
                                    dict(kernel_size=2, stride="2"),
                                    dict(kernel_size=2, padding=(1, 0.5))])
def test_type_errors(kwargs):
    with pytest.raises(TypeError, match="max_pool2d"):
        F.max_pool2d(np.zeros((1, 1, 8, 8), np.float32), **kwargs)


def test_module_type_error_at_construction():
    with pytest.raises(TypeError, match="MaxPool2d: kernel_size"):
        nn.MaxPool2d(2.5)

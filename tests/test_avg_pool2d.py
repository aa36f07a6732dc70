"""avg_pool2d / adaptive_avg_pool2d against numpy float64 and finite differences."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import assert_close, numeric_grad


def np_avg_pool(x, k, s, p, ceil_mode=False, count_include_pad=True, divisor=None):
    n, c, h, w = x.shape

    def out_len(length, kk, ss, pp):
        num = length + 2 * pp - kk
        o = (-(-num // ss) if ceil_mode else num // ss) + 1
        if ceil_mode and (o - 1) * ss >= length + pp:
            o -= 1
        return o

    ho, wo = out_len(h, k[0], s[0], p[0]), out_len(w, k[1], s[1], p[1])
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * s[0] - p[0], j * s[1] - p[1]
            y1, x1 = min(y0 + k[0], h + p[0]), min(x0 + k[1], w + p[1])
            padded = (y1 - y0) * (x1 - x0)
            ya, yb, xa, xb = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
            total = x[:, :, ya:yb, xa:xb].sum((2, 3))
            d = divisor or (padded if count_include_pad else (yb - ya) * (xb - xa))
            out[:, :, i, j] = total / d
    return out


def np_adaptive(x, out):
    n, c, h, w = x.shape
    res = np.zeros((n, c) + tuple(out))
    for i in range(out[0]):
        for j in range(out[1]):
            y0, y1 = i * h // out[0], -(-(i + 1) * h // out[0])
            x0, x1 = j * w // out[1], -(-(j + 1) * w // out[1])
            res[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean((2, 3))
    return res


@pytest.mark.parametrize("seed", range(20))
def test_avg_pool2d_matches_numpy_with_gradients(seed):
    rng = np.random.default_rng(seed)
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    s = tuple(int(v) for v in rng.integers(1, 3, 2))
    p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
    ceil, cip = bool(seed % 2), bool(seed % 3)
    x = rng.standard_normal((2, 2, k[0] + rng.integers(0, 4), k[1] + rng.integers(0, 4)))
    x = x.astype(np.float32).astype(np.float64)
    tx = cnnrs.tensor(x, requires_grad=True)
    y = F.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=cip)
    want = np_avg_pool(x, k, s, p, ceil, cip)
    assert_close(y.numpy(), want)
    g = rng.standard_normal(want.shape)
    (y * cnnrs.tensor(g)).sum().backward()
    num = numeric_grad(lambda v: np.sum(np_avg_pool(v, k, s, p, ceil, cip) * g), x)
    assert_close(tx.grad.numpy(), num, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("hw,out", [((7, 5), (3, 2)), ((4, 4), (1, 1)), ((5, 9), (5, 4)),
                                    ((3, 3), (6, 4)), ((13, 13), (6, 6))])
def test_adaptive_avg_pool_matches_numpy(hw, out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3) + hw).astype(np.float32).astype(np.float64)
    tx = cnnrs.tensor(x, requires_grad=True)
    y = nn.AdaptiveAvgPool2d(out)(tx)
    assert_close(y.numpy(), np_adaptive(x, out))
    g = rng.standard_normal(y.shape)
    (y * cnnrs.tensor(g)).sum().backward()
    assert_close(tx.grad.numpy(), numeric_grad(lambda v: np.sum(np_adaptive(v, out) * g), x),
                 rtol=1e-3, atol=1e-4)


def test_divisor_override_and_layers():
    x = cnnrs.tensor(np.ones((1, 1, 4, 4)))
    assert F.avg_pool2d(x, 2, divisor_override=2).numpy().max() == 2.0
    assert nn.AvgPool2d(2)(x).shape == (1, 1, 2, 2)
    assert nn.AdaptiveAvgPool2d((None, 2))(cnnrs.zeros(1, 1, 3, 4)).shape == (1, 1, 3, 2)


def test_errors():
    x = cnnrs.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="avg_pool2d: pad should be at most half"):
        F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: output size is too small"):
        F.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="avg_pool2d: expected a 4-D input"):
        F.avg_pool2d(cnnrs.zeros(4, 4), 2)
    with pytest.raises(ValueError, match="divisor_override must be non-zero"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="avg_pool2d: kernel_size"):
        F.avg_pool2d(x, 2.0)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size must be positive"):
        F.adaptive_avg_pool2d(x, 0)

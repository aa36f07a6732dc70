"""locally_connected2d against a numpy einsum over patches, and finite
differences."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import assert_close, numeric_grad


def np_local(x, w, b, s, p):
    n, c, h, wd = x.shape
    ho, wo, co, ci, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    out = np.zeros((n, co, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * s[0]:i * s[0] + kh, j * s[1]:j * s[1] + kw]
            out[:, :, i, j] = np.einsum("ncyx,ocyx->no", patch, w[i, j])
    return out if b is None else out + b[None]


@pytest.mark.parametrize("seed", range(8))
def test_matches_numpy_and_gradients(seed):
    rng = np.random.default_rng(seed)
    n, ci, co = rng.integers(1, 3), rng.integers(1, 3), rng.integers(1, 4)
    kh, kw = rng.integers(1, 4, size=2)
    s = tuple(int(v) for v in rng.integers(1, 3, size=2))
    p = tuple(int(v) for v in rng.integers(0, 2, size=2))
    h, wd = kh + rng.integers(0, 3), kw + rng.integers(0, 3)
    ho, wo = (h + 2 * p[0] - kh) // s[0] + 1, (wd + 2 * p[1] - kw) // s[1] + 1
    x = rng.standard_normal((n, ci, h, wd)).astype(np.float32).astype(np.float64)
    w = rng.standard_normal((ho, wo, co, ci, kh, kw)).astype(np.float32).astype(np.float64)
    b = rng.standard_normal((co, ho, wo)).astype(np.float32).astype(np.float64)
    tx, tw, tb = (cnnrs.tensor(v, requires_grad=True) for v in (x, w, b))
    y = F.locally_connected2d(tx, tw, tb, s, p)
    assert_close(y.numpy(), np_local(x, w, b, s, p))
    g = rng.standard_normal(y.shape)
    (y * cnnrs.tensor(g)).sum().backward()
    assert_close(tx.grad.numpy(), numeric_grad(lambda v: np.sum(np_local(v, w, b, s, p) * g), x),
                 rtol=1e-3, atol=1e-4)
    assert_close(tw.grad.numpy(), numeric_grad(lambda v: np.sum(np_local(x, v, b, s, p) * g), w),
                 rtol=1e-3, atol=1e-4)
    assert_close(tb.grad.numpy(), g.sum(0), rtol=1e-4, atol=1e-5)


def test_layer_shapes_and_errors():
    layer = nn.LocallyConnected2d(3, 4, (8, 8), 3, padding=1)
    assert layer.weight.shape == (8, 8, 4, 3, 3, 3) and layer.bias.shape == (4, 8, 8)
    assert layer(cnnrs.zeros(2, 3, 8, 8)).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="locally_connected2d: input has 2 channels"):
        layer(cnnrs.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="weight is for a 8x8 output but this input gives 6x6"):
        layer(cnnrs.zeros(2, 3, 6, 6))
    with pytest.raises(ValueError, match="padding must be non-negative"):
        F.locally_connected2d(cnnrs.zeros(1, 1, 3, 3), cnnrs.zeros(1, 1, 1, 1, 3, 3), padding=-1)
    with pytest.raises(ValueError, match="does not fit"):
        nn.LocallyConnected2d(1, 1, 2, 5)

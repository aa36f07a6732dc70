"""F.linear and nn.Linear against numpy float64."""

import math

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import numeric_grad_inplace as central_diff


def np_linear(x, w, b):
    y = x @ w.T
    return y if b is None else y + b




@pytest.mark.parametrize("seed", range(10))
def test_forward_and_backward_match_numpy(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        lead = tuple(int(v) for v in rng.integers(1, 5, size=rng.integers(0, 4)))
        k, n = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        x = rng.standard_normal(lead + (k,)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32) if rng.random() < 0.7 else None
        xt = cnnrs.tensor(x, requires_grad=True)
        wt = cnnrs.tensor(w, requires_grad=True)
        bt = None if b is None else cnnrs.tensor(b, requires_grad=True)
        y = F.linear(xt, wt, bt)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        want = np_linear(x64, w64, None if b is None else b.astype(np.float64))
        assert y.shape == lead + (n,)
        # Sums of up to 40 products of unit normals.
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5)

        g = rng.standard_normal(want.shape)
        y.backward(g.astype(np.float32))
        g2 = g.reshape(-1, n)
        np.testing.assert_allclose(xt.grad.numpy(), (g2 @ w64).reshape(x.shape),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(wt.grad.numpy(), g2.T @ x64.reshape(-1, k),
                                   rtol=1e-4, atol=1e-5)
        if b is not None:
            np.testing.assert_allclose(bt.grad.numpy(), g2.sum(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_backward_matches_finite_differences(seed):
    rng = np.random.default_rng(50 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 4, size=3))
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    xt, wt, bt = (cnnrs.tensor(a, requires_grad=True) for a in (x, w, b))
    (F.linear(xt, wt, bt) * cnnrs.tensor(r)).sum().backward()
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))

    def loss():
        return float((np_linear(x64, w64, b64) * r.astype(np.float64)).sum())

    for t, a in ((xt, x64), (wt, w64), (bt, b64)):
        np.testing.assert_allclose(t.grad.numpy(), central_diff(loss, a), rtol=1e-4, atol=1e-5)


def test_large_layer_uses_threads_and_stays_correct():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    w = rng.standard_normal((200, 300)).astype(np.float32)
    b = rng.standard_normal(200).astype(np.float32)
    want = np_linear(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    # 300-term sums: allow a little more absolute error.
    np.testing.assert_allclose(F.linear(x, w, b).numpy(), want, rtol=1e-4, atol=1e-4)


def test_empty_batch_and_zero_features():
    w = np.ones((3, 4), np.float32)
    assert F.linear(np.zeros((0, 4), np.float32), w).shape == (0, 3)
    b = np.array([1.0, 2.0], np.float32)
    y = F.linear(np.zeros((5, 0), np.float32), np.zeros((2, 0), np.float32), b)
    np.testing.assert_array_equal(y.numpy(), np.tile(b, (5, 1)))


def test_module_init_shapes_and_forward():
    cnnrs.manual_seed(0)
    fc = nn.Linear(120, 84)
    assert fc.weight.shape == (84, 120) and fc.bias.shape == (84,)
    assert sum(p.numel() for p in fc.parameters()) == 120 * 84 + 84
    bound = 1 / math.sqrt(120)
    assert np.abs(fc.weight.numpy()).max() <= bound and np.abs(fc.bias.numpy()).max() <= bound
    # Uniform over the whole range, not a constant.
    assert fc.weight.numpy().std() > bound / 3
    cnnrs.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(120, 84).weight.numpy(), fc.weight.numpy())
    x = np.random.default_rng(0).standard_normal((8, 120)).astype(np.float32)
    want = np_linear(x.astype(np.float64), fc.weight.numpy().astype(np.float64),
                     fc.bias.numpy().astype(np.float64))
    np.testing.assert_allclose(fc(x).numpy(), want, rtol=1e-4, atol=1e-5)
    assert repr(fc) == "Linear(in_features=120, out_features=84, bias=True)"
    assert set(dict(fc.named_parameters())) == {"weight", "bias"}


def test_module_without_bias_and_gradients_reach_parameters():
    fc = nn.Linear(3, 2, bias=False)
    assert fc.bias is None and [n for n, _ in fc.named_parameters()] == ["weight"]
    assert repr(fc) == "Linear(in_features=3, out_features=2, bias=False)"
    x = cnnrs.tensor(np.ones((4, 3), np.float32))
    fc(x).sum().backward()
    np.testing.assert_allclose(fc.weight.grad.numpy(), np.full((2, 3), 4.0))
    old = fc.weight.numpy()
    fc.reset_parameters()
    assert not np.array_equal(old, fc.weight.numpy())


@pytest.mark.parametrize("x,w,b,match", [
    ((8, 5), (3, 4), None,
     r"linear: input has 5 features \(last dim\) but weight expects 4; input \(8, 5\), "
     r"weight \(3, 4\)"),
    ((2, 7, 5), (3, 4), (3,), r"linear: input has 5 features"),
    ((8, 4), (3, 4), (4,), r"linear: bias must have shape \(3,\) .* but got \(4,\)"),
    ((8, 4), (3, 4), (3, 1), r"linear: bias must have shape \(3,\)"),
    ((), (3, 4), None, r"linear: input must have at least 1 dimension"),
    ((8, 4), (4,), None, r"linear: weight must be 2-D"),
])
def test_shape_errors(x, w, b, match):
    z = lambda s: None if s is None else np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=match):
        F.linear(z(x), z(w), z(b))


def test_module_errors():
    with pytest.raises(TypeError, match="Linear: in_features must be an int"):
        nn.Linear(3.0, 2)
    with pytest.raises(TypeError, match="Linear: out_features must be an int"):
        nn.Linear(3, True)
    with pytest.raises(ValueError, match="Linear: out_features must be non-negative"):
        nn.Linear(3, -1)
    with pytest.raises(ValueError, match=r"linear: input has 4 features .* expects 3"):
        nn.Linear(3, 2)(np.zeros((1, 4), np.float32))

"""softmax, log_softmax, cross_entropy, mse_loss and their nn modules against
numpy float64."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import numeric_grad_inplace as central_diff


def np_log_softmax(x, dim):
    m = np.max(x, axis=dim, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def np_softmax(x, dim):
    return np.exp(np_log_softmax(x, dim))


def np_cross_entropy(x, t, reduction="mean", ignore_index=-100):
    """x: (N, C, *) or (C,); t: (N, *) or ()."""
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
        per = np_cross_entropy(x, t, "none", ignore_index)[0]
        keep = np.asarray(t[0] != ignore_index)
    else:
        logp = np_log_softmax(x, 1)
        keep = t != ignore_index
        safe = np.where(keep, t, 0)
        picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        per = np.where(keep, -picked, 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    with np.errstate(invalid="ignore"):  # all ignored: NaN, as in PyTorch
        return per.sum() / keep.sum()




def rand_shape(rng, max_nd):
    return tuple(int(v) for v in rng.integers(1, 5, size=rng.integers(0, max_nd + 1)))


# --- softmax ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_matches_numpy(seed, log):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        shape = rand_shape(rng, 4)
        nd = max(len(shape), 1)
        dim = int(rng.integers(-nd, nd))
        x = (3 * rng.standard_normal(shape)).astype(np.float32)
        fn, ref = (F.log_softmax, np_log_softmax) if log else (F.softmax, np_softmax)
        want = ref(x.astype(np.float64), dim if shape else None)
        y = fn(x, dim)
        assert y.shape == shape
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)
        # Stable for huge logits (1000 + x is exact to ~6e-5 in float32).
        np.testing.assert_allclose(fn(x + 1000.0, dim).numpy(), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_matches_finite_differences(seed, log):
    rng = np.random.default_rng(20 + seed)
    shape = tuple(int(v) for v in rng.integers(1, 4, size=rng.integers(1, 4)))
    dim = int(rng.integers(-len(shape), len(shape)))
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    xt = cnnrs.tensor(x, requires_grad=True)
    (F.log_softmax if log else F.softmax)(xt, dim).backward(w)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ref = np_log_softmax if log else np_softmax
    num = central_diff(lambda: float((ref(x64, dim) * w64).sum()), x64)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-4, atol=1e-5)


def test_softmax_nan_propagates_per_lane():
    x = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    y = F.softmax(x, 1).numpy()
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("fn,name", [(F.softmax, "softmax"), (F.log_softmax, "log_softmax")])
def test_softmax_errors(fn, name):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=rf"{name}: dim 2 is out of range .*\(2, 3\)"):
        fn(x, 2)
    with pytest.raises(ValueError, match=rf"{name}: dim -3 is out of range"):
        fn(x, -3)
    with pytest.raises(TypeError, match=name):
        fn(x, 1.0)
    with pytest.raises(TypeError, match=name):
        fn(x, None)


def test_softmax_modules():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(nn.Softmax(dim=1)(x).numpy(), F.softmax(x, 1).numpy())
    np.testing.assert_array_equal(nn.LogSoftmax(-1)(x).numpy(), F.log_softmax(x, -1).numpy())
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"
    with pytest.raises(TypeError, match="Softmax: dim must be given"):
        nn.Softmax()
    with pytest.raises(TypeError, match="LogSoftmax: dim must be given"):
        nn.LogSoftmax()


# --- cross_entropy ------------------------------------------------------------------------


def random_ce(rng, ignore_index):
    c = int(rng.integers(1, 7))
    if rng.random() < 0.15:
        shape, tshape = (c,), ()
    else:
        n = int(rng.integers(1, 6))
        extra = rand_shape(rng, 2)
        shape, tshape = (n, c) + extra, (n,) + extra
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    t = rng.integers(0, c, size=tshape)
    t = np.where(rng.random(tshape) < 0.2, ignore_index, t).astype(np.int64)
    return x, t


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_numpy_and_finite_differences(seed, reduction):
    rng = np.random.default_rng(seed)
    # PyTorch's default ignore_index, and one that is a valid class.
    ignore = -100 if seed % 2 == 0 else 1
    for _ in range(4):
        x, t = random_ce(rng, ignore)
        x64 = x.astype(np.float64)
        want = np_cross_entropy(x64, t, reduction, ignore)
        xt = cnnrs.tensor(x, requires_grad=True)
        y = F.cross_entropy(xt, t, reduction=reduction, ignore_index=ignore)
        assert y.shape == np.shape(want)
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
        if reduction == "mean" and not (t != ignore).any():
            assert np.isnan(y.item())
            continue
        w = rng.standard_normal(np.shape(want)).astype(np.float32)
        y.backward(w)
        num = central_diff(
            lambda x64=x64, t=t, w=w: float((np_cross_entropy(x64, t, reduction, ignore)
                                             * w.astype(np.float64)).sum()),
            x64)
        np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-4, atol=1e-5)


def test_cross_entropy_segmentation_shape():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    t = rng.integers(0, 4, size=(2, 6, 5))
    t[0, 0, :] = -100
    np.testing.assert_allclose(F.cross_entropy(x, t).item(),
                               np_cross_entropy(x.astype(np.float64), t), rtol=1e-5)
    per = F.cross_entropy(x, t, reduction="none")
    assert per.shape == (2, 6, 5) and (per.numpy()[0, 0] == 0).all()
    # Every label ignored: the mean is NaN (0/0), the sum 0, as in PyTorch.
    assert np.isnan(F.cross_entropy(x, np.full((2, 6, 5), -100)).item())
    assert F.cross_entropy(x, np.full((2, 6, 5), -100), reduction="sum").item() == 0.0


def test_cross_entropy_unbatched():
    x = np.array([1.0, 2.0, 0.5], np.float32)
    want = np_cross_entropy(x.astype(np.float64), np.int64(1))
    y = F.cross_entropy(x, 1)
    assert y.shape == ()
    np.testing.assert_allclose(y.item(), want, rtol=1e-6)
    assert F.cross_entropy(x, np.array(1), reduction="none").shape == ()


@pytest.mark.parametrize("target", [
    [1, 0, 2],
    np.array([1, 0, 2], np.int32),
    np.array([1, 0, 2], np.uint8),
    np.array([1.0, 0.0, 2.0]),
    cnnrs.tensor([1.0, 0.0, 2.0]),
    np.array([1, 0, 2])[::-1][::-1],
    np.array([[1, 9, 0, 9, 2, 9]])[0, ::2],  # non-contiguous view
])
def test_cross_entropy_label_conversions(target):
    x = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    want = np_cross_entropy(x.astype(np.float64), np.array([1, 0, 2]))
    np.testing.assert_allclose(F.cross_entropy(x, target).item(), want, rtol=1e-5)


@pytest.mark.parametrize("target,match", [
    (np.array([0.5, 1.0]), r"cross_entropy: target must hold integer class labels.*0\.5"),
    (cnnrs.tensor([1.0, 1.5]), r"cross_entropy: target must hold integer class labels"),
    (np.array([1.0, np.nan]), r"cross_entropy: target must hold integer class labels"),
    (np.array([True, False]), r"cross_entropy: target must hold integer class labels.*bool"),
    (["a", "b"], r"cross_entropy: target must hold integer class labels"),
    (np.array([1, None], dtype=object), r"cross_entropy: .*object"),
    ([1, 2.5], r"cross_entropy: target must hold integer class labels"),
])
def test_cross_entropy_label_type_errors(target, match):
    with pytest.raises(TypeError, match=match):
        F.cross_entropy(np.zeros((2, 3), np.float32), target)


@pytest.mark.parametrize("x_shape,target,kwargs,match", [
    ((4, 5), [0, 1, 5, 2], {},
     r"cross_entropy: target label 5 is out of range for 5 classes"),
    ((4, 5), [0, -1, 4, 2], {}, r"cross_entropy: target label -1 is out of range for 5 classes"),
    ((4, 5), [0, 1, 2, 3], dict(ignore_index=3, reduction="sum"), None),
    ((4, 5), [0, 1, 2], {},
     r"cross_entropy: target shape \(3,\) does not match input \(4, 5\): "
     r"expected target shape \(4,\)"),
    ((4, 5), [[0], [1], [2], [3]], {}, r"cross_entropy: target shape \(4, 1\)"),
    ((2, 3, 4, 5), np.zeros((2, 5, 4), np.int64), {},
     r"expected target shape \(2, 4, 5\)"),
    ((), 0, {}, r"cross_entropy: input must be .* 0-d"),
    ((4, 5), [0, 1, 2, 3], dict(reduction="avg"),
     r"cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    ((4, 5), [0, 1, 2, 3], dict(ignore_index=1.5), r"cross_entropy"),
    ((4, 5), [2**63 - 1 + 1, 0, 0, 0], {}, r"cross_entropy: target label .* out of range"),
    ((4, 5), np.array([1e30, 0, 0, 0]), {}, r"cross_entropy: target label .* out of range"),
])
def test_cross_entropy_errors(x_shape, target, kwargs, match):
    x = np.zeros(x_shape, np.float32)
    if match is None:  # a valid call next to the invalid ones
        assert F.cross_entropy(x, target, **kwargs).item() == pytest.approx(3 * np.log(5), 1e-5)
        return
    exc = TypeError if "ignore_index" in kwargs and not isinstance(
        kwargs["ignore_index"], int) else ValueError
    with pytest.raises(exc, match=match):
        F.cross_entropy(x, target, **kwargs)


def test_cross_entropy_positional_weight_gives_a_clear_type_error():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="cross_entropy: reduction must be a str"):
        F.cross_entropy(x, [0, 1], np.ones(3, np.float32))


def test_cross_entropy_module():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 3, 2, 1, 1, 0])
    for kw in ({}, dict(reduction="sum"), dict(ignore_index=1, reduction="none")):
        np.testing.assert_array_equal(nn.CrossEntropyLoss(**kw)(x, t).numpy(),
                                      F.cross_entropy(x, t, **kw).numpy())
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(ignore_index=-100, reduction='mean')"
    with pytest.raises(ValueError, match="CrossEntropyLoss: per-class weight is not supported"):
        nn.CrossEntropyLoss(weight=np.ones(4))
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be"):
        nn.CrossEntropyLoss(reduction="avg")


# --- mse_loss -----------------------------------------------------------------------------


def np_mse(x, t, reduction):
    sq = (x - t) ** 2
    return {"none": sq, "sum": sq.sum(), "mean": sq.mean() if sq.size else np.nan}[reduction]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_numpy_and_finite_differences(seed, reduction):
    rng = np.random.default_rng(seed)
    shape = rand_shape(rng, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    xt, tt = cnnrs.tensor(x, requires_grad=True), cnnrs.tensor(t, requires_grad=True)
    y = F.mse_loss(xt, tt, reduction=reduction)
    want = np_mse(x64, t64, reduction)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)
    w = rng.standard_normal(np.shape(want)).astype(np.float32)
    y.backward(w)
    w64 = w.astype(np.float64)

    def loss():
        return float((np_mse(x64, t64, reduction) * w64).sum())

    np.testing.assert_allclose(xt.grad.numpy(), central_diff(loss, x64), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tt.grad.numpy(), central_diff(loss, t64), rtol=1e-4, atol=1e-5)


def test_mse_errors_and_module():
    with pytest.raises(ValueError, match=r"mse_loss: input \(3, 1\) and target \(3,\) must have "
                                         r"the same shape"):
        F.mse_loss(np.zeros((3, 1), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="mse_loss: reduction must be"):
        F.mse_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), reduction="max")
    with pytest.raises(TypeError, match="mse_loss: reduction must be a str"):
        F.mse_loss(np.zeros(3, np.float32), np.zeros(3, np.float32), 1)
    x, t = cnnrs.tensor([1.0, 2.0]), cnnrs.tensor([1.0, 4.0])
    assert nn.MSELoss()(x, t).item() == 2.0
    assert nn.MSELoss(reduction="sum")(x, t).item() == 4.0
    assert repr(nn.MSELoss()) == "MSELoss(reduction='mean')"
    with pytest.raises(ValueError, match="MSELoss: reduction must be"):
        nn.MSELoss(reduction="avg")

"""Segmentation losses: cross_entropy with a per-pixel weight map,
binary_cross_entropy_with_logits, dice_loss (and their nn modules), against
independent numpy float64 implementations and central finite differences."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import numeric_grad

REDUCTIONS = ("mean", "sum", "none")


def np_log_softmax(x, dim):
    m = x.max(axis=dim, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def np_weighted_ce(x, t, w, reduction, ignore_index=-100):
    """x (N, C, *), t (N, *), w (N, *): w * -log softmax(x)[t]; mean = sum / sum(w)."""
    logp = np_log_softmax(x, 1)
    keep = t != ignore_index
    picked = np.take_along_axis(logp, np.where(keep, t, 0)[:, None], axis=1)[:, 0]
    per = np.where(keep, -picked * w, 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / np.where(keep, w, 0.0).sum()


def np_bce_logits(x, y, w, pw, reduction):
    s = 1.0 / (1.0 + np.exp(-x))
    per = -w * (pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    per = np.broadcast_to(per, x.shape)
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


def np_dice(x, target, activation, smooth, reduction, include_background=True,
            ignore_index=-100):
    """Per (sample, class) 1 - (2 sum p g + s) / (sum p + sum g + s)."""
    if activation == "softmax":
        p = np.exp(np_log_softmax(x, 1))
        c = x.shape[1]
        m = (target != ignore_index)[:, None].astype(np.float64)
        g = (target[:, None] == np.arange(c).reshape((1, c) + (1,) * (x.ndim - 2))) * m
    else:
        p = 1.0 / (1.0 + np.exp(-x))
        m = np.ones_like(x)
        g = target
    axes = tuple(range(2, x.ndim))
    inter = (p * g * m).sum(axes)
    d = (2 * inter + smooth) / ((p * m).sum(axes) + g.sum(axes) + smooth)
    per = 1 - d
    if not include_background:
        per = per[:, 1:]
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


def weighted_sum_grad(ref, x, go):
    """Finite-difference gradient of sum(ref(x) * go) in float64."""
    return numeric_grad(lambda z: float((np.asarray(ref(z)) * go).sum()), x)


# --- cross_entropy with pixel_weight -------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_cross_entropy_matches_numpy_and_finite_differences(seed, reduction):
    rng = np.random.default_rng(seed)
    n, c, h, w = (int(v) for v in rng.integers(1, 4, 4))
    c += 1
    x = rng.standard_normal((n, c, h, w)) * 2
    t = rng.integers(0, c, (n, h, w))
    t[rng.random((n, h, w)) < 0.2] = -100
    t.flat[0] = 0  # at least one label counts
    wmap = rng.random((n, h, w)) * 10
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.cross_entropy(xt, t, reduction=reduction, pixel_weight=wmap.astype(np.float32))
    want = np_weighted_ce(x, t, wmap, reduction)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5)
    go = rng.standard_normal(np.shape(want))
    y.backward(cnnrs.tensor(go) if reduction == "none" else cnnrs.tensor(np.float32(go)))
    num = weighted_sum_grad(lambda z: np_weighted_ce(z, t, wmap, reduction), x, go)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-4, atol=1e-5)


def test_weighted_cross_entropy_with_ones_equals_unweighted_and_module():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    t = rng.integers(0, 3, (2, 5, 4))
    ones = np.ones((2, 5, 4), np.float32)
    for r in REDUCTIONS:
        a = F.cross_entropy(x, t, reduction=r, pixel_weight=ones).numpy()
        np.testing.assert_array_equal(a, F.cross_entropy(x, t, reduction=r).numpy())
    wmap = rng.random((2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(nn.CrossEntropyLoss()(x, t, pixel_weight=wmap).numpy(),
                               np_weighted_ce(x.astype(np.float64), t, wmap, "mean"), rtol=1e-5)


def test_weighted_cross_entropy_errors():
    x = np.zeros((2, 3, 4, 5), np.float32)
    t = np.zeros((2, 4, 5), np.int64)
    with pytest.raises(ValueError, match=r"cross_entropy: pixel_weight shape \(2, 5, 4\)"):
        F.cross_entropy(x, t, pixel_weight=np.ones((2, 5, 4)))
    bad = np.ones((2, 4, 5))
    bad[0, 1, 2] = -1
    with pytest.raises(ValueError, match="cross_entropy: pixel_weight must be finite and "
                                         "non-negative"):
        F.cross_entropy(x, t, pixel_weight=bad)


# --- binary_cross_entropy_with_logits ------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_numpy_and_finite_differences(seed, reduction):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(v) for v in rng.integers(1, 4, rng.integers(1, 5)))
    x = rng.standard_normal(shape) * 3
    y = rng.random(shape) if seed % 2 else (rng.random(shape) < 0.5).astype(np.float64)
    # weight and pos_weight over a suffix of the shape, some dims 1, or none.
    def bshape():
        k = int(rng.integers(0, len(shape) + 1))
        return tuple(1 if rng.random() < 0.5 else d for d in shape[len(shape) - k:])
    w = rng.random(bshape()) * 3 if seed % 3 else None
    pw = rng.random(bshape()) * 3 if seed % 4 else None
    xt = cnnrs.tensor(x, requires_grad=True)
    yt = cnnrs.tensor(y, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(
        xt, yt, None if w is None else w.astype(np.float32), reduction=reduction,
        pos_weight=None if pw is None else pw.astype(np.float32))
    w_ = 1.0 if w is None else w
    pw_ = 1.0 if pw is None else pw
    want = np_bce_logits(x, y, w_, pw_, reduction)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)
    go = rng.standard_normal(np.shape(want))
    out.backward(cnnrs.tensor(go) if reduction == "none" else cnnrs.tensor(np.float32(go)))
    nx = weighted_sum_grad(lambda z: np_bce_logits(z, y, w_, pw_, reduction), x, go)
    ny = weighted_sum_grad(lambda z: np_bce_logits(x, z, w_, pw_, reduction), y, go)
    np.testing.assert_allclose(xt.grad.numpy(), nx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(yt.grad.numpy(), ny, rtol=1e-4, atol=1e-5)


def test_bce_with_logits_stable_and_module_with_per_channel_pos_weight():
    x = np.array([100.0, -100.0, 100.0, -100.0], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(x, y, reduction="none").numpy(), [100, 100, 0, 0],
        atol=1e-6)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 4))
    y = (rng.random((2, 3, 4, 4)) < 0.3).astype(np.float64)
    pw = np.array([1.0, 2.0, 5.0]).reshape(3, 1, 1)
    loss = nn.BCEWithLogitsLoss(pos_weight=pw.astype(np.float32))
    np.testing.assert_allclose(loss(x.astype(np.float32), y.astype(np.float32)).item(),
                               np_bce_logits(x, y, 1.0, pw, "mean"), rtol=1e-5)


def test_bce_with_logits_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target shape "
                                         r"\(3, 2\) must be the same as the input shape"):
        F.binary_cross_entropy_with_logits(x, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: pos_weight of "
                                         r"shape \(2,\) does not broadcast"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: reduction must be"):
        F.binary_cross_entropy_with_logits(x, x, reduction="avg")


# --- dice_loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dice_loss_softmax_matches_numpy_and_finite_differences(seed, reduction):
    rng = np.random.default_rng(200 + seed)
    n, c, h, w = (int(v) for v in rng.integers(1, 4, 4))
    c += 1
    x = rng.standard_normal((n, c, h, w)) * 2
    t = rng.integers(0, c, (n, h, w))
    ignore = -100 if seed % 2 else 1
    t[rng.random((n, h, w)) < 0.2] = ignore
    smooth = (1.0, 0.5)[seed % 2]
    bg = seed % 3 != 0
    xt = cnnrs.tensor(x, requires_grad=True)
    out = F.dice_loss(xt, t, smooth=smooth, include_background=bg, ignore_index=ignore,
                      reduction=reduction)

    def ref(z):
        return np_dice(z, t, "softmax", smooth, reduction, bg, ignore)

    want = ref(x)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-6)
    go = rng.standard_normal(np.shape(want))
    out.backward(cnnrs.tensor(go) if reduction == "none" else cnnrs.tensor(np.float32(go)))
    np.testing.assert_allclose(xt.grad.numpy(), weighted_sum_grad(ref, x, go),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_dice_loss_sigmoid_matches_numpy_and_finite_differences(seed):
    rng = np.random.default_rng(300 + seed)
    shape = (2, int(rng.integers(1, 3)), 3, 5)
    x = rng.standard_normal(shape) * 2
    y = (rng.random(shape) < 0.4).astype(np.float64)
    xt = cnnrs.tensor(x, requires_grad=True)
    module = nn.DiceLoss(activation="sigmoid", reduction="sum")
    out = module(xt, y.astype(np.float32))

    def ref(z):
        return np_dice(z, y, "sigmoid", 1.0, "sum")

    np.testing.assert_allclose(out.item(), ref(x), rtol=1e-5)
    out.backward()
    np.testing.assert_allclose(xt.grad.numpy(), weighted_sum_grad(ref, x, np.float64(1.0)),
                               rtol=1e-4, atol=1e-5)


def test_dice_loss_lowers_with_a_better_prediction():
    t = np.array([[[0, 1], [1, 0]]])
    good = np.stack([t == 0, t == 1], axis=1).astype(np.float32) * 8 - 4
    assert F.dice_loss(good, t).item() < 0.1 < F.dice_loss(-good, t).item()


def test_dice_loss_errors():
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"dice_loss: target shape \(2, 5, 4\)"):
        F.dice_loss(x, np.zeros((2, 5, 4), np.int64))
    with pytest.raises(ValueError, match="dice_loss: target label 3 is out of range"):
        F.dice_loss(x, np.full((2, 4, 5), 3))
    with pytest.raises(ValueError, match="dice_loss: softmax over 1 class"):
        F.dice_loss(np.zeros((2, 1, 4, 5), np.float32), np.zeros((2, 4, 5), np.int64))
    with pytest.raises(ValueError, match=r"dice_loss: sigmoid targets must be in \[0, 1\]"):
        F.dice_loss(x, np.full(x.shape, 2.0, np.float32), activation="sigmoid")
    with pytest.raises(ValueError, match="dice_loss: include_background=False"):
        F.dice_loss(x, x, activation="sigmoid", include_background=False)
    with pytest.raises(ValueError, match="dice_loss: activation must be"):
        F.dice_loss(x, np.zeros((2, 4, 5), np.int64), activation="relu")
    with pytest.raises(ValueError, match="dice_loss: smooth must be"):
        F.dice_loss(x, np.zeros((2, 4, 5), np.int64), smooth=-1.0)
    with pytest.raises(TypeError, match="dice_loss: target must hold integer class labels"):
        F.dice_loss(x, np.full((2, 4, 5), 0.5))

"""batch_norm / BatchNorm2d against numpy (float64) and finite differences."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import assert_close, numeric_grad


def np_bn_train(x, gamma, beta, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axes)
    var = x.var(axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * gamma.reshape(shape) + beta.reshape(shape), mean, var


@pytest.mark.parametrize("seed", range(12))
def test_training_forward_backward_and_running_stats(seed):
    rng = np.random.default_rng(seed)
    shape = [(4, 3), (2, 3, 5), (3, 4, 3, 2), (2, 2, 1, 3)][seed % 4]
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32).astype(np.float64)
    gamma = rng.standard_normal(c).astype(np.float32).astype(np.float64)
    beta = rng.standard_normal(c).astype(np.float32).astype(np.float64)
    rm = cnnrs.tensor(np.zeros(c))
    rv = cnnrs.tensor(np.ones(c))
    tx = cnnrs.tensor(x, requires_grad=True)
    tg = cnnrs.tensor(gamma, requires_grad=True)
    tb = cnnrs.tensor(beta, requires_grad=True)
    y = F.batch_norm(tx, rm, rv, tg, tb, training=True, momentum=0.1, eps=1e-5)
    want, mean, var = np_bn_train(x, gamma, beta, 1e-5)
    assert_close(y.numpy(), want, rtol=1e-4, atol=1e-4)
    m = x.size / c
    assert_close(rm.numpy(), 0.1 * mean, atol=1e-6)
    assert_close(rv.numpy(), 0.9 + 0.1 * var * m / (m - 1), atol=1e-5)
    w = rng.standard_normal(shape)
    (y * cnnrs.tensor(w)).sum().backward()
    gx = numeric_grad(lambda v: np.sum(np_bn_train(v, gamma, beta, 1e-5)[0] * w), x)
    gg = numeric_grad(lambda v: np.sum(np_bn_train(x, v, beta, 1e-5)[0] * w), gamma)
    gb = numeric_grad(lambda v: np.sum(np_bn_train(x, gamma, v, 1e-5)[0] * w), beta)
    assert_close(tx.grad.numpy(), gx, rtol=1e-3, atol=1e-3)
    assert_close(tg.grad.numpy(), gg, rtol=1e-3, atol=1e-3)
    assert_close(tb.grad.numpy(), gb, rtol=1e-3, atol=1e-3)


def test_eval_mode_uses_running_stats_with_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    rm, rv = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    gamma = rng.standard_normal(3).astype(np.float32)
    beta = rng.standard_normal(3).astype(np.float32)
    tx = cnnrs.tensor(x, requires_grad=True)
    y = F.batch_norm(tx, cnnrs.tensor(rm), cnnrs.tensor(rv), gamma, beta, training=False)
    s = (1, 3, 1, 1)
    want = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-5) * gamma.reshape(s) + beta.reshape(s)
    assert_close(y.numpy(), want)
    y.sum().backward()
    assert_close(tx.grad.numpy(), np.broadcast_to((gamma / np.sqrt(rv + 1e-5)).reshape(s), x.shape))


def test_module_train_eval_state_dict():
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    x = cnnrs.tensor(np.random.default_rng(1).standard_normal((4, 3, 2, 2)) * 3 + 2)
    bn(x)
    bn(x)
    sd = bn.state_dict()
    assert int(sd["num_batches_tracked"]) == 2
    assert np.all(sd["running_mean"].numpy() != 0)
    bn.eval()
    y_eval = bn(x).numpy()
    bn2 = nn.BatchNorm2d(3).eval()
    bn2.load_state_dict(sd)
    assert np.array_equal(bn2(x).numpy(), y_eval)
    assert int(bn2.state_dict()["num_batches_tracked"]) == 2
    assert repr(bn) == ("BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, "
                        "track_running_stats=True)")
    cum = nn.BatchNorm2d(3, momentum=None)
    cum(x)
    assert_close(cum.running_mean.numpy(), x.numpy().mean((0, 2, 3)), atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3)(cnnrs.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"batch_norm: weight has shape \(4,\)"):
        F.batch_norm(cnnrs.zeros(2, 3, 2, 2), None, None, np.ones(4), None, training=True)
    with pytest.raises(ValueError, match="BatchNorm2d: expected a 4-D input"):
        nn.BatchNorm2d(3)(cnnrs.zeros(2, 3))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="eval mode needs running_mean"):
        F.batch_norm(cnnrs.zeros(2, 3, 2, 2), None, None, training=False)

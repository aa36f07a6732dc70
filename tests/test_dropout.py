"""The four dropouts: statistics, masks shared by forward and backward,
seeding, eval behaviour, and max-pool dropout against numpy."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import assert_close, numeric_grad


def test_dropout_statistics_scaling_and_gradient():
    cnnrs.manual_seed(0)
    x = cnnrs.tensor(np.ones((200, 100)), requires_grad=True)
    y = F.dropout(x, 0.25)
    yv = y.numpy()
    assert abs((yv != 0).mean() - 0.75) < 0.01
    assert np.all((yv == 0) | np.isclose(yv, 1 / 0.75))
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), yv)
    cnnrs.manual_seed(0)
    assert np.array_equal(F.dropout(x, 0.25).numpy(), yv)
    assert np.array_equal(F.dropout(x, 0.25, training=False).numpy(), x.numpy())


def test_layers_follow_train_eval():
    cnnrs.manual_seed(1)
    x = cnnrs.tensor(np.ones((4, 6, 5, 5)))
    for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5), nn.Cutout(3)):
        assert not np.array_equal(layer(x).numpy(), x.numpy())
        layer.eval()
        assert np.array_equal(layer(x).numpy(), x.numpy())
    y = nn.Dropout2d(0.5)(x).numpy()
    per_plane = y.reshape(24, 25)
    assert np.all(per_plane.min(1) == per_plane.max(1))
    c = nn.Cutout(3)(x).numpy()
    assert np.all((c == 0).sum((2, 3)) <= 9) and np.all((c == 0).sum((2, 3)) >= 1)
    assert np.all(c[:, :1] == c)  # same square in every channel


def np_weighted_pool(x, k, s, q):
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = np.sort(x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, c, -1), axis=-1)
            m = win.shape[-1]
            wts = q * (1 - q) ** (m - 1 - np.arange(m))
            out[:, :, i, j] = (win * wts).sum(-1)
    return out


@pytest.mark.parametrize("k,s,p", [(2, 2, 0.5), (3, 2, 0.3), (2, 1, 0.8)])
def test_max_pool_dropout_eval_matches_numpy_and_training_mean(k, s, p):
    rng = np.random.default_rng(k + s)
    x = np.abs(rng.standard_normal((2, 3, 7, 7))).astype(np.float32)
    tx = cnnrs.tensor(x, requires_grad=True)
    y = F.max_pool_dropout2d(tx, k, s, p=p, training=False)
    want = np_weighted_pool(x.astype(np.float64), k, s, 1 - p)
    assert_close(y.numpy(), want, rtol=1e-5, atol=1e-6)
    w = rng.standard_normal(want.shape)
    (y * cnnrs.tensor(w)).sum().backward()
    g = numeric_grad(lambda v: np.sum(np_weighted_pool(v, k, s, 1 - p) * w), x.astype(np.float64))
    assert_close(tx.grad.numpy(), g, rtol=1e-3, atol=1e-4)
    # The eval output is the expectation of the training output.
    cnnrs.manual_seed(2)
    runs = np.mean([F.max_pool_dropout2d(x, k, s, p=p).numpy() for _ in range(3000)], axis=0)
    assert_close(runs, want, rtol=0.1, atol=0.05)
    plain = F.max_pool_dropout2d(x, k, s, p=p, training=False, eval_mode="max").numpy()
    assert plain.shape == want.shape and np.all(plain >= want - 1e-6)


def test_errors():
    x = cnnrs.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="dropout: dropout probability"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match="Dropout2d: dropout probability"):
        nn.Dropout2d(-0.1)
    with pytest.raises(ValueError, match="dropout2d: expected a 3-D or 4-D input"):
        F.dropout2d(cnnrs.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="cutout: expected a 4-D input"):
        F.cutout(cnnrs.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError, match="Cutout: size must be at least 1"):
        nn.Cutout(0)
    with pytest.raises(TypeError, match="cutout: size must be an int"):
        F.cutout(x, 2.5)
    with pytest.raises(ValueError, match="max_pool_dropout: kernel 5x5 is larger than the input"):
        F.max_pool_dropout2d(x, 5)
    with pytest.raises(ValueError, match="eval_mode"):
        nn.MaxPoolDropout2d(2, eval_mode="mean")

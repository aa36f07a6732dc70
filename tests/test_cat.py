"""cnnrs.cat against np.concatenate, with gradients."""

import numpy as np
import pytest

import cnnrs


@pytest.mark.parametrize("seed", range(30))
def test_matches_numpy_concatenate_and_splits_the_gradient(seed):
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(1, 5))
    base = [int(v) for v in rng.integers(0, 4, nd)]
    d = int(rng.integers(nd))
    arrays = []
    for _ in range(int(rng.integers(1, 5))):
        shape = list(base)
        shape[d] = int(rng.integers(0, 4))
        arrays.append(rng.standard_normal(shape).astype(np.float32))
    dim = d if rng.random() < 0.5 else d - nd
    ts = [cnnrs.tensor(a, requires_grad=True) for a in arrays]
    y = cnnrs.cat(ts, dim=dim)
    want = np.concatenate(arrays, axis=d)
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.numpy(), want)
    if y.numel() == 0:
        return
    g = rng.standard_normal(want.shape).astype(np.float32)
    y.backward(g)
    # d/dx_i of sum(cat(x) * g) is x_i's slice of g.
    bounds = np.cumsum([a.shape[d] for a in arrays])[:-1]
    for t, piece in zip(ts, np.split(g, bounds, axis=d)):
        np.testing.assert_array_equal(t.grad.numpy(), piece)


def test_unet_skip_concatenation_and_repeated_input():
    up = cnnrs.tensor(np.ones((2, 64, 8, 8), np.float32), requires_grad=True)
    skip = cnnrs.tensor(np.full((2, 64, 8, 8), 2.0, np.float32), requires_grad=True)
    y = cnnrs.cat((up, skip), 1)
    assert y.shape == (2, 128, 8, 8)
    assert y.grad_fn == "CatBackward"
    (y * y).sum().backward()
    np.testing.assert_array_equal(up.grad.numpy(), 2 * np.ones((2, 64, 8, 8)))
    np.testing.assert_array_equal(skip.grad.numpy(), 4 * np.ones((2, 64, 8, 8)))
    x = cnnrs.tensor(np.arange(3, dtype=np.float32), requires_grad=True)
    y = cnnrs.cat([x, x, np.zeros(2, np.float32)])
    assert y.numpy().tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    y.backward(np.arange(8, dtype=np.float32))
    assert x.grad.numpy().tolist() == [0 + 3, 1 + 4, 2 + 5]
    with cnnrs.no_grad():
        assert not cnnrs.cat([x, x]).requires_grad


@pytest.mark.parametrize(
    "arrays, dim, match",
    [
        ([], 0, r"cat: expected a non-empty list of tensors"),
        ([np.zeros((2, 3, 8, 8)), np.zeros((2, 5, 9, 8))], 1,
         r"cat: sizes of tensors must match except in dimension 1: tensor 0 has shape "
         r"\(2, 3, 8, 8\) but tensor 1 has shape \(2, 5, 9, 8\) \(dimension 2: 8 vs 9\)"),
        ([np.zeros((2, 3)), np.zeros((2, 3, 1))], 0,
         r"cat: tensors must have the same number of dimensions"),
        ([np.zeros((2, 3)), np.zeros((2, 3))], 2, r"cat: dim 2 is out of range"),
        ([np.zeros((2, 3)), np.zeros((2, 3))], -3, r"cat: dim -3 is out of range"),
        ([np.float32(1.0)], 0, r"cat: zero-dimensional tensor \(at position 0\)"),
    ],
)
def test_bad_inputs_raise_value_error(arrays, dim, match):
    with pytest.raises(ValueError, match=match):
        cnnrs.cat([np.asarray(a, np.float32) for a in arrays], dim)


@pytest.mark.parametrize(
    "tensors, dim, match",
    [
        (np.zeros((2, 2), np.float32), 0, r"cat: tensors must be a list or tuple"),
        ([np.zeros(2, np.float32)], 0.0, r"cat: dim must be an int"),
        ([np.zeros(2, np.float32)], True, r"cat: dim must be an int"),
        (["ab"], 0, r"expected numeric data"),
    ],
)
def test_bad_types_raise_type_error(tensors, dim, match):
    with pytest.raises(TypeError, match=match):
        cnnrs.cat(tensors, dim)

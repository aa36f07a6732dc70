"""F.pad against np.pad (and slicing for negative pads), with gradients
checked against finite differences of the numpy version."""

import numpy as np
import pytest

import cnnrs
from cnnrs.nn import functional as F
from conftest import numeric_grad_inplace as numeric_grad

NP_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def np_pad(x, pad, mode="constant", value=0.0):
    """float64 reference: np.pad for the positive parts, slicing for the
    negative parts (constant mode crops)."""
    x = np.asarray(x, np.float64)
    k = len(pad) // 2
    widths = [(0, 0)] * x.ndim
    crops = [slice(None)] * x.ndim
    for i in range(k):
        lo, hi = pad[2 * i], pad[2 * i + 1]
        ax = x.ndim - 1 - i
        widths[ax] = (max(lo, 0), max(hi, 0))
        n = x.shape[ax] + max(lo, 0) + max(hi, 0)
        crops[ax] = slice(max(-lo, 0), n - max(-hi, 0))
    kw = dict(constant_values=value) if mode == "constant" else {}
    return np.pad(x, widths, mode=NP_MODE[mode], **kw)[tuple(crops)]




def random_case(rng):
    while True:
        mode = ["constant", "reflect", "replicate"][rng.integers(3)]
        nd = int(rng.integers(1, 5))
        shape = tuple(int(v) for v in rng.integers(1, 6, nd))
        k = int(rng.integers(1, 3))
        if nd < k:
            continue
        if mode == "constant":
            pad = [int(v) for v in rng.integers(-2, 4, 2 * k)]
        else:
            pad = [int(v) for v in rng.integers(0, 4, 2 * k)]
        ok = True
        for i in range(k):
            n = shape[nd - 1 - i]
            lo, hi = pad[2 * i], pad[2 * i + 1]
            ok &= n + lo + hi >= 0 and (mode != "reflect" or (lo < n and hi < n))
        if ok:
            return shape, pad, mode


@pytest.mark.parametrize("seed", range(40))
def test_forward_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    shape, pad, mode = random_case(rng)
    x = rng.standard_normal(shape).astype(np.float32)
    value = None if mode != "constant" or rng.random() < 0.5 else 1.5
    y = F.pad(x, pad, mode=mode, value=value)
    want = np_pad(x, pad, mode, 0.0 if value is None else value)
    assert y.shape == want.shape, (shape, pad, mode)
    np.testing.assert_array_equal(y.numpy(), want)


@pytest.mark.parametrize("seed", range(20))
def test_gradient_matches_finite_differences(seed):
    rng = np.random.default_rng(100 + seed)
    shape, pad, mode = random_case(rng)
    x = rng.standard_normal(shape).astype(np.float32).astype(np.float64)
    gy = rng.standard_normal(np_pad(x, pad, mode).shape).astype(np.float32)

    def loss():
        return float((np_pad(x, pad, mode) * gy).sum())

    num = numeric_grad(loss, x)
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.pad(xt, pad, mode=mode)
    if y.numel() == 0:
        return
    y.backward(gy)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-5, atol=1e-5)


def test_known_values_and_grad_fn():
    x = cnnrs.tensor(np.array([[1.0, 2.0, 3.0]], np.float32), requires_grad=True)
    assert F.pad(x, (2, 1), value=9).numpy().tolist() == [[9, 9, 1, 2, 3, 9]]
    assert F.pad(x, (2, 2), mode="reflect").numpy().tolist() == [[3, 2, 1, 2, 3, 2, 1]]
    assert F.pad(x, [1, 2], mode="replicate").numpy().tolist() == [[1, 1, 2, 3, 3, 3]]
    assert F.pad(x, (-1, 0)).numpy().tolist() == [[2, 3]]
    y = F.pad(x, (0, 0, 1, 1))
    assert y.shape == (3, 3) and y.grad_fn == "PadBackward"
    y = F.pad(x, (1, 1), mode="replicate")
    y.backward(np.ones((1, 5), np.float32))
    assert x.grad.numpy().tolist() == [[2, 1, 2]]


@pytest.mark.parametrize(
    "x_shape, pad, kwargs, match",
    [
        ((2, 3), (1, 1, 1), {}, r"pad: padding must have 2 or 4 values"),
        ((2, 3), (1,) * 6, {}, r"pad: padding must have 2 or 4 values .* got 6"),
        ((5,), (1, 1, 1, 1), {}, r"pad: padding of length 4 needs an input with at least 2 "
                                 r"dimensions, got shape \(5,\)"),
        ((1, 4), (-3, -2), {}, r"pad: the input size 4, plus padding -3 and -2, gives a "
                               r"negative output size"),
        ((1, 1, 3, 3), (3, 0, 0, 0), dict(mode="reflect"), r"pad: padding \(3, 0\) in 'reflect' "
                                                           r"mode must be less than the size 3"),
        ((1, 3), (-1, 0), dict(mode="replicate"), r"pad: negative padding \(-1, 0\) is only "
                                                  r"supported in 'constant' mode"),
        ((1, 3), (1, 0), dict(mode="circular"), r"pad: mode must be 'constant', 'reflect' or "
                                                r"'replicate', got 'circular'"),
        ((1, 3), (1, 0), dict(mode="reflect", value=1.0), r"pad: padding mode 'reflect' doesn't "
                                                          r"take in value argument"),
        ((1, 3), (2**70, 0), {}, r"pad: pad .* out of range"),
    ],
)
def test_bad_arguments_raise_value_error(x_shape, pad, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.pad(np.zeros(x_shape, np.float32), pad, **kwargs)


@pytest.mark.parametrize(
    "pad, kwargs, match",
    [
        (3, {}, r"pad: pad must be a tuple or list of ints"),
        ((1.0, 1), {}, r"pad: pad must be an int"),
        ((1, 1), dict(mode=None), r"pad: mode must be a str"),
        ((1, 1), dict(value="0"), r"pad: value must be a number"),
    ],
)
def test_bad_types_raise_type_error(pad, kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.pad(np.zeros((2, 2), np.float32), pad, **kwargs)

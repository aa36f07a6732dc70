"""F.interpolate and nn.Upsample against an independent numpy float64
implementation: each axis is a dense (out x in) weight matrix built from
PyTorch's documented coordinate rules, and ``y = A_h @ x @ A_w^T``."""

import math

import numpy as np
import pytest

import cnnrs
from cnnrs import nn
from cnnrs.nn import functional as F
from conftest import numeric_grad_inplace as numeric_grad

A_CUBIC = -0.75


def keys(d):
    """Keys' cubic convolution kernel at distance d (A = -0.75)."""
    d = abs(d)
    if d <= 1:
        return (A_CUBIC + 2) * d**3 - (A_CUBIC + 3) * d**2 + 1
    if d < 2:
        return A_CUBIC * d**3 - 5 * A_CUBIC * d**2 + 8 * A_CUBIC * d - 4 * A_CUBIC
    return 0.0


def axis_matrix(mode, n_in, n_out, scale=None, align_corners=False):
    """(n_out, n_in) float64 weights of one axis. ``scale`` is the given
    scale factor (None when the size was given or recomputed)."""
    m = np.zeros((n_out, n_in))
    if mode == "nearest":
        for o in range(n_out):
            if n_out == n_in:
                i = o
            elif n_out == 2 * n_in:
                i = o // 2
            else:
                # PyTorch computes this scale and product in float32.
                s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
                i = min(int(np.floor(np.float32(o) * s)), n_in - 1)
            m[o, i] = 1.0
        return m
    if mode == "bilinear" and n_out == n_in:
        return np.eye(n_in)
    if align_corners:
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        ratio = 1.0 / scale if scale else n_in / n_out
    for o in range(n_out):
        src = ratio * o if align_corners else ratio * (o + 0.5) - 0.5
        if mode == "bilinear":
            src = max(src, 0.0)
            i0 = min(math.floor(src), n_in - 1)
            lam = min(max(src - i0, 0.0), 1.0)
            m[o, i0] += 1 - lam
            m[o, min(i0 + 1, n_in - 1)] += lam
        else:
            i = min(math.floor(src), n_in - 1)
            t = min(max(src - i, 0.0), 1.0)
            for k in (-1, 0, 1, 2):
                m[o, min(max(i + k, 0), n_in - 1)] += keys(t - k)
    return m


def np_matrices(x_shape, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    h, w = x_shape[2:]
    if size is not None:
        (ho, wo), scales = ((size, size) if isinstance(size, int) else size), (None, None)
    else:
        sf = (scale_factor, scale_factor) if np.isscalar(scale_factor) else scale_factor
        ho, wo = math.floor(h * sf[0]), math.floor(w * sf[1])
        scales = (None, None) if recompute_scale_factor else sf
    ac = bool(align_corners)
    return (axis_matrix(mode, h, ho, scales[0], ac), axis_matrix(mode, w, wo, scales[1], ac))


def np_interpolate(x, **kw):
    ah, aw = np_matrices(x.shape, **kw)
    return np.einsum("oh,nchw,pw->ncop", ah, np.asarray(x, np.float64), aw)


def np_interpolate_grad(x_shape, gy, **kw):
    ah, aw = np_matrices(x_shape, **kw)
    return np.einsum("oh,ncop,pw->nchw", ah, np.asarray(gy, np.float64), aw)




FACTORS = [0.5, 0.6, 0.75, 1.0, 1.2, 1.5, 1.7, 2.0, 2.5, 3.0]


def random_config(rng):
    mode = ["nearest", "bilinear", "bicubic"][rng.integers(3)]
    x_shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 9)),
               int(rng.integers(1, 9)))
    kw = dict(mode=mode)
    if mode != "nearest":
        kw["align_corners"] = [None, False, True][rng.integers(3)]
    while True:
        if rng.random() < 0.5:
            kw["size"] = (int(rng.integers(1, 13)), int(rng.integers(1, 13)))
            break
        sf = (FACTORS[rng.integers(len(FACTORS))], FACTORS[rng.integers(len(FACTORS))])
        if min(math.floor(x_shape[2] * sf[0]), math.floor(x_shape[3] * sf[1])) >= 1:
            kw["scale_factor"] = sf
            if rng.random() < 0.3:
                kw["recompute_scale_factor"] = True
            break
    return x_shape, kw


@pytest.mark.parametrize("seed", range(60))
def test_forward_and_backward_match_numpy(seed):
    rng = np.random.default_rng(seed)
    x_shape, kw = random_config(rng)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = np_interpolate(x, **kw)
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.interpolate(xt, **kw)
    assert y.shape == want.shape, kw
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5, err_msg=str(kw))
    gy = rng.standard_normal(want.shape).astype(np.float32)
    y.backward(gy)
    # Each input pixel gathers up to (out/in)^2 * 16 weighted gradients.
    np.testing.assert_allclose(xt.grad.numpy(), np_interpolate_grad(x_shape, gy, **kw),
                               rtol=1e-5, atol=1e-4, err_msg=str(kw))


@pytest.mark.parametrize("mode, align_corners", [
    ("nearest", None), ("bilinear", False), ("bilinear", True), ("bicubic", False),
    ("bicubic", True)])
@pytest.mark.parametrize("size, scale_factor", [((7, 2), None), (None, (1.5, 0.7)),
                                                 ((2, 5), None)])
def test_gradient_matches_finite_differences(mode, align_corners, size, scale_factor):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 3)).astype(np.float32).astype(np.float64)
    kw = dict(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners)
    gy = rng.standard_normal(np_interpolate(x, **kw).shape).astype(np.float32)

    def loss():
        return float((np_interpolate(x, **kw) * gy).sum())

    num = numeric_grad(loss, x)
    xt = cnnrs.tensor(x, requires_grad=True)
    F.interpolate(xt, **kw).backward(gy)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-4, atol=1e-5)


def test_known_values_2x2_to_4x4():
    a, b, c, d = 1.0, 5.0, -2.0, 7.0
    x = np.array([[[[a, b], [c, d]]]], np.float32)

    def up(row0, row1, w):
        return [w[0] * r0 + w[1] * r1 for r0, r1 in zip(row0, row1)]

    # align_corners=False: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    top = [a, .75 * a + .25 * b, .25 * a + .75 * b, b]
    bot = [c, .75 * c + .25 * d, .25 * c + .75 * d, d]
    want = [top, up(top, bot, (.75, .25)), up(top, bot, (.25, .75)), bot]
    y = F.interpolate(x, size=4, mode="bilinear", align_corners=False).numpy()[0, 0]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    assert F.interpolate(x, scale_factor=2, mode="bilinear").numpy()[0, 0].tolist() == \
        y.tolist()
    # align_corners=True: sources 0, 1/3, 2/3, 1.
    top = [a, (2 * a + b) / 3, (a + 2 * b) / 3, b]
    bot = [c, (2 * c + d) / 3, (c + 2 * d) / 3, d]
    want = [top, up(top, bot, (2 / 3, 1 / 3)), up(top, bot, (1 / 3, 2 / 3)), bot]
    y = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=True).numpy()[0, 0]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    # nearest: each pixel becomes a 2x2 block.
    y = F.interpolate(x, scale_factor=2).numpy()[0, 0]
    assert y.tolist() == [[a, a, b, b], [a, a, b, b], [c, c, d, d], [c, c, d, d]]


def test_bicubic_at_the_borders_known_values():
    """4 -> 7 with align_corners: sources dst/2. At t = 1/2 the weights are
    keys(1.5) = -0.09375 and keys(0.5) = 0.59375; at dst = 1 the tap at -1 is
    clamped onto pixel 0, at dst = 5 the tap at 4 onto pixel 3."""
    p, q, r, s = 1.0, -2.0, 4.0, 3.0
    x = np.array([p, q, r, s], np.float32).reshape(1, 1, 1, 4)
    y = F.interpolate(x, size=(1, 7), mode="bicubic", align_corners=True).numpy().ravel()
    c1, c2 = 0.59375, -0.09375
    want = [p, (c2 + c1) * p + c1 * q + c2 * r, q, c2 * p + c1 * q + c1 * r + c2 * s, r,
            c2 * q + c1 * r + (c1 + c2) * s, s]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    # Half-pixel 2 -> 4: sources -0.25, 0.25, 0.75, 1.25; every tap outside
    # [0, 1] is clamped, so the first output is a*(w(-1)+w(0)+w(1)) + b*w(2)
    # with t = 0.75 about floor(-0.25) = -1.
    a, b = 2.0, 10.0
    x = np.array([a, b], np.float32).reshape(1, 1, 1, 2)
    y = F.interpolate(x, size=(1, 4), mode="bicubic").numpy().ravel()
    t = 0.75
    w = [keys(t + 1), keys(t), keys(1 - t), keys(2 - t)]
    assert abs(y[0] - ((w[0] + w[1] + w[2]) * a + w[3] * b)) < 1e-5
    np.testing.assert_allclose(y, np_interpolate(x, size=(1, 4), mode="bicubic").ravel(),
                               rtol=1e-6, atol=1e-6)


def test_non_integer_scale_factor_is_used_in_the_mapping():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    # 4 * 1.7 -> 6: floor(o / 1.7) with the given factor ...
    y = F.interpolate(x, scale_factor=(1, 1.7)).numpy().ravel()
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    # ... floor(o * 4/6) when recomputed or when the size is given.
    y = F.interpolate(x, scale_factor=(1, 1.7), recompute_scale_factor=True).numpy().ravel()
    assert y.tolist() == [0, 0, 1, 2, 2, 3]
    assert F.interpolate(x, size=(1, 6)).numpy().ravel().tolist() == [0, 0, 1, 2, 2, 3]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    for mode in ("bilinear", "bicubic"):
        y = F.interpolate(x, scale_factor=(1.3, 2.6), mode=mode)
        np.testing.assert_allclose(
            y.numpy(), np_interpolate(x, scale_factor=(1.3, 2.6), mode=mode), rtol=1e-5,
            atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_downsampling(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 9, 8)).astype(np.float32)
    for kw in (dict(size=(4, 3)), dict(scale_factor=0.5), dict(scale_factor=(0.3, 0.8))):
        y = F.interpolate(x, mode=mode, **kw)
        np.testing.assert_allclose(y.numpy(), np_interpolate(x, mode=mode, **kw), rtol=1e-5,
                                   atol=1e-5)


def test_upsample_layer():
    x = cnnrs.randn(1, 3, 5, 4)
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    assert repr(up) == "Upsample(scale_factor=2.0, mode='bilinear')"
    y = up(x)
    assert y.shape == (1, 3, 10, 8)
    np.testing.assert_allclose(
        y.numpy(), np_interpolate(x.numpy(), scale_factor=2.0, mode="bilinear",
                                  align_corners=True), rtol=1e-5, atol=1e-5)
    up = nn.Upsample(size=(7, 3))
    assert repr(up) == "Upsample(size=(7, 3), mode='nearest')"
    assert up(x).shape == (1, 3, 7, 3)
    assert list(up.parameters()) == []
    assert nn.Upsample(scale_factor=(2, 3), mode="bicubic")(x).shape == (1, 3, 10, 12)
    with pytest.raises(ValueError, match="interpolate: align_corners option can only be set"):
        nn.Upsample(scale_factor=2, align_corners=False)(x)
    xt = cnnrs.tensor(x.numpy(), requires_grad=True)
    y = nn.Upsample(scale_factor=2, mode="bicubic")(xt)
    assert y.grad_fn == "UpsampleBicubic2DBackward"


X = np.zeros((1, 2, 4, 4), np.float32)


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (X, dict(size=8, scale_factor=2), r"interpolate: only one of size or scale_factor"),
        (X, dict(), r"interpolate: either size or scale_factor should be defined"),
        (X, dict(size=8, align_corners=False), r"interpolate: align_corners option can only "
                                               r"be set with the interpolating modes"),
        (X, dict(scale_factor=2, align_corners=True), r"interpolate: align_corners option"),
        (X[0], dict(size=8), r"interpolate: expected a 4-D input \(N, C, H, W\) but got shape "
                             r"\(2, 4, 4\)"),
        (X[None], dict(size=8, mode="bilinear"), r"interpolate: expected a 4-D input"),
        (X, dict(size=0), r"interpolate: output size must be positive, got \(0, 0\)"),
        (X, dict(size=(3, -1)), r"interpolate: output size must be positive, got \(3, -1\)"),
        (X, dict(scale_factor=0), r"interpolate: scale_factor must be positive and finite"),
        (X, dict(scale_factor=-2.0), r"interpolate: scale_factor must be positive and finite"),
        (X, dict(scale_factor=float("nan")), r"interpolate: scale_factor must be positive"),
        (X, dict(scale_factor=0.2), r"interpolate: input and output sizes should be greater "
                                    r"than 0, but got input \(H: 4, W: 4\) output \(H: 0, W: 0\)"),
        (np.zeros((1, 1, 0, 3), np.float32), dict(size=2), r"interpolate: input and output "
                                                           r"sizes should be greater than 0"),
        (X, dict(size=(2, 2, 2)), r"interpolate: size must be a single value or a pair"),
        (X, dict(size=2**70), r"interpolate: size .* is out of range"),
        (X, dict(size=4, mode="linear"), r"interpolate: mode must be 'nearest', 'bilinear' or "
                                         r"'bicubic'"),
        (X, dict(size=4, recompute_scale_factor=True), r"interpolate: recompute_scale_factor "
                                                       r"is not meaningful"),
    ],
)
def test_bad_arguments_raise_value_error(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.interpolate(x, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=2.5), r"interpolate: size must be an int"),
        (dict(size=(2, True)), r"interpolate: size must be an int"),
        (dict(scale_factor="2"), r"interpolate: scale_factor must be a number"),
        (dict(size=2, mode=1), r"interpolate: mode must be a str"),
        (dict(size=2, mode="bilinear", align_corners=1), r"interpolate: align_corners must be a "
                                                         r"bool"),
    ],
)
def test_bad_argument_types_raise_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.interpolate(X, **kwargs)

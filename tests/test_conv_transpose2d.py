"""conv_transpose2d and nn.ConvTranspose2d against an independent numpy
float64 implementation (scatter every input pixel through every tap)."""

import math

import numpy as np
import pytest

import cnnrs
from cnnrs import nn
from cnnrs.nn import functional as F
from conftest import numeric_grad_inplace as numeric_grad

# f32 results vs float64: each output sums up to C_in/groups*kH*kW products
# of O(1) values.
RTOL, ATOL = 1e-4, 2e-5


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _full_size(n, k, s, d, op):
    """Rows of the uncropped output: the last tap lands at (n-1)*s + d*(k-1),
    plus output_padding rows that no tap reaches."""
    return (n - 1) * s + d * (k - 1) + 1 + op


def _geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    dh, dw = _pair(dilation)
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    hf, wf = _full_size(h, kh, sh, dh, oph), _full_size(w, kw, sw, dw, opw)
    return (sh, sw), (ph, pw), (dh, dw), (hf, wf), (hf - 2 * ph, wf - 2 * pw)


def np_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                        dilation=1):
    """Float64 transposed conv: scatter-add each tap's contribution into the
    full (uncropped) output, then remove ``padding`` from each side."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw), (hf, wf), (ho, wo) = _geometry(
        x.shape, w.shape, stride, padding, output_padding, dilation)
    n, c_in, h, wd = x.shape
    _, c_out_g, kh, kw = w.shape
    c_in_g = c_in // groups
    full = np.zeros((n, c_out_g * groups, hf, wf))
    for g in range(groups):
        ci = slice(g * c_in_g, (g + 1) * c_in_g)
        co = slice(g * c_out_g, (g + 1) * c_out_g)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wd - 1) + 1, sw)
                full[:, co, rows, cols] += np.einsum("nchw,co->nohw", x[:, ci], w[ci, :, i, j])
    out = full[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        out = out + np.asarray(b, np.float64)[None, :, None, None]
    return out


def np_adjoints(x, w, gy, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(dx, dw) of <np_conv_transpose2d(x, w), gy>: the forward is linear in
    each of x and w, so each tap's einsum is differentiated directly."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw), (hf, wf), (ho, wo) = _geometry(
        x.shape, w.shape, stride, padding, output_padding, dilation)
    n, c_in, h, wd = x.shape
    _, c_out_g, kh, kw = w.shape
    c_in_g = c_in // groups
    gfull = np.zeros((n, c_out_g * groups, hf, wf))
    gfull[:, :, ph:ph + ho, pw:pw + wo] = gy
    gx = np.zeros_like(x)
    gw = np.zeros_like(w)
    for g in range(groups):
        ci = slice(g * c_in_g, (g + 1) * c_in_g)
        co = slice(g * c_out_g, (g + 1) * c_out_g)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wd - 1) + 1, sw)
                win = gfull[:, co, rows, cols]
                gx[:, ci] += np.einsum("nohw,co->nchw", win, w[ci, :, i, j])
                gw[ci, :, i, j] += np.einsum("nchw,nohw->co", x[:, ci], win)
    return gx, gw




KERNELS = [(1, 1), (2, 2), (3, 3), (1, 3), (4, 2), (5, 5)]


def random_config(rng):
    while True:
        kh, kw = KERNELS[rng.integers(len(KERNELS))]
        groups = int(rng.integers(1, 4))
        c_in_g, c_out_g = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        x_shape = (int(rng.integers(0, 4)), c_in_g * groups, int(rng.integers(1, 7)),
                   int(rng.integers(1, 7)))
        w_shape = (c_in_g * groups, c_out_g, kh, kw)
        *_, (ho, wo) = _geometry(x_shape, w_shape, stride, padding, output_padding, dilation)
        if ho >= 1 and wo >= 1:
            as_arg = lambda p: p[0] if p[0] == p[1] and rng.random() < 0.5 else p  # noqa: E731
            return dict(x_shape=x_shape, w_shape=w_shape, bias=bool(rng.random() < 0.5),
                        kw=dict(stride=as_arg(stride), padding=as_arg(padding),
                                output_padding=as_arg(output_padding), groups=groups,
                                dilation=as_arg(dilation)))


def _draw(rng, cfg):
    x = rng.standard_normal(cfg["x_shape"]).astype(np.float32)
    w = rng.standard_normal(cfg["w_shape"]).astype(np.float32)
    c_out = cfg["w_shape"][1] * cfg["kw"]["groups"]
    b = rng.standard_normal(c_out).astype(np.float32) if cfg["bias"] else None
    return x, w, b


@pytest.mark.parametrize("seed", range(40))
def test_forward_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    cfg = random_config(rng)
    x, w, b = _draw(rng, cfg)
    want = np_conv_transpose2d(x, w, b, **cfg["kw"])
    got = F.conv_transpose2d(x, w, b, **cfg["kw"])
    assert got.shape == want.shape, cfg
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL, err_msg=str(cfg))


@pytest.mark.parametrize("seed", range(40))
def test_backward_matches_numpy_adjoints(seed):
    rng = np.random.default_rng(500 + seed)
    cfg = random_config(rng)
    x, w, b = _draw(rng, cfg)
    gy = rng.standard_normal(np_conv_transpose2d(x, w, None, **cfg["kw"]).shape)
    gy = gy.astype(np.float32)
    xt = cnnrs.tensor(x, requires_grad=True)
    wt = cnnrs.tensor(w, requires_grad=True)
    bt = cnnrs.tensor(b, requires_grad=True) if b is not None else None
    F.conv_transpose2d(xt, wt, bt, **cfg["kw"]).backward(gy)
    gx_ref, gw_ref = np_adjoints(x, w, gy, **cfg["kw"])
    np.testing.assert_allclose(xt.grad.numpy(), gx_ref, rtol=RTOL, atol=ATOL, err_msg=str(cfg))
    # dW and db sum over N*H*W (up to a few hundred) products.
    np.testing.assert_allclose(wt.grad.numpy(), gw_ref, rtol=RTOL, atol=1e-4, err_msg=str(cfg))
    if bt is not None:
        np.testing.assert_allclose(bt.grad.numpy(), gy.astype(np.float64).sum(axis=(0, 2, 3)),
                                   rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [
        ((2, 2, 3, 4), (2, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                          groups=2, dilation=(1, 2))),
        ((1, 3, 3, 3), (3, 2, 2, 2), dict(stride=2)),
        ((2, 2, 3, 2), (2, 3, 1, 1), dict(output_padding=1, dilation=2)),
        ((1, 2, 2, 3), (2, 1, 3, 3), dict(stride=3, padding=1, output_padding=2)),
    ],
)
def test_gradients_match_finite_differences(x_shape, w_shape, kw):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kw.get("groups", 1))
    gy = rng.standard_normal(np_conv_transpose2d(x, w, None, **kw).shape)
    x, w, b, gy = (a.astype(np.float32).astype(np.float64) for a in (x, w, b, gy))

    def loss():
        return float((np_conv_transpose2d(x, w, b, **kw) * gy).sum())

    nx, nw, nb = numeric_grad(loss, x), numeric_grad(loss, w), numeric_grad(loss, b)
    xt = cnnrs.tensor(x, requires_grad=True)
    wt = cnnrs.tensor(w, requires_grad=True)
    bt = cnnrs.tensor(b, requires_grad=True)
    F.conv_transpose2d(xt, wt, bt, **kw).backward(gy.astype(np.float32))
    np.testing.assert_allclose(xt.grad.numpy(), nx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wt.grad.numpy(), nw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bt.grad.numpy(), nb, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(30))
def test_adjoint_identity_with_conv2d(seed):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for the same stride,
    padding, dilation and groups; output_padding chosen so the transposed
    conv returns x's size. Inner products in float64."""
    rng = np.random.default_rng(900 + seed)
    while True:
        groups = int(rng.integers(1, 4))
        c_in_g, c_out_g = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        hw = (int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        out = [(hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)]
        if min(out) >= 1 and all(hw[i] + 2 * p[i] >= d[i] * (k[i] - 1) + 1 for i in range(2)):
            break
    op = tuple(hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1 - (out[i] - 1) * s[i] for i in range(2))
    n = int(rng.integers(1, 3))
    x = rng.standard_normal((n, c_in_g * groups, *hw)).astype(np.float32)
    w = rng.standard_normal((c_out_g * groups, c_in_g, *k)).astype(np.float32)
    y = rng.standard_normal((n, c_out_g * groups, *out)).astype(np.float32)
    cx = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=groups).numpy()
    ty = F.conv_transpose2d(y, w, stride=s, padding=p, output_padding=op, groups=groups,
                            dilation=d).numpy()
    assert ty.shape == x.shape
    lhs = float((cx.astype(np.float64) * y).sum())
    rhs = float((x.astype(np.float64) * ty).sum())
    scale = math.sqrt(cx.size) * c_in_g * k[0] * k[1]
    assert abs(lhs - rhs) <= 1e-5 * max(scale, 1.0), (lhs, rhs)


def test_unet_up_convolution_known_values():
    """2x2 stride-2: every input pixel becomes a 2x2 block ``x * w``."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    w = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]], np.float32)
    y = F.conv_transpose2d(x, w, np.array([0.5], np.float32), stride=2).numpy()[0, 0]
    want = np.array([[1, 10, 2, 20], [100, 1000, 200, 2000],
                     [3, 30, 4, 40], [300, 3000, 400, 4000]], np.float64) + 0.5
    np.testing.assert_array_equal(y, want)


def test_unbatched_input_zero_batch_and_no_grad():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert y.shape == (2, 8, 8)
    want = np_conv_transpose2d(x[None], w, stride=2, padding=1, output_padding=1)[0]
    np.testing.assert_allclose(y.numpy(), want, rtol=RTOL, atol=ATOL)
    y = F.conv_transpose2d(np.zeros((0, 3, 4, 4), np.float32), w, np.ones(2, np.float32))
    assert y.shape == (0, 2, 6, 6)
    xt = cnnrs.tensor(x[None], requires_grad=True)
    with cnnrs.no_grad():
        assert not F.conv_transpose2d(xt, w).requires_grad
    assert F.conv_transpose2d(xt, w).grad_fn == "ConvTranspose2dBackward"


def test_repeated_backward_is_bit_identical():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 4, 2, 2)).astype(np.float32)
    gy = rng.standard_normal((6, 8, 24, 24)).astype(np.float32)
    grads = []
    for _ in range(3):
        xt = cnnrs.tensor(x, requires_grad=True)
        wt = cnnrs.tensor(w, requires_grad=True)
        F.conv_transpose2d(xt, wt, stride=2, groups=2).backward(gy)
        grads.append((xt.grad.numpy().tobytes(), wt.grad.numpy().tobytes()))
    assert grads[0] == grads[1] == grads[2]


# --- errors -------------------------------------------------------------------------

X = np.zeros((2, 4, 5, 5), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


def test_channel_mismatch_message():
    x = np.zeros((8, 3, 16, 16), np.float32)
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError) as e:
        F.conv_transpose2d(x, w)
    assert str(e.value) == ("conv_transpose2d: input has 3 channels but weight expects 4 "
                            "(weight dim 0); input (8, 3, 16, 16), weight (4, 2, 3, 3)")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=0), r"conv_transpose2d: stride must be positive, got \(0, 0\)"),
        (dict(stride=(1, -2)), r"conv_transpose2d: stride must be positive, got \(1, -2\)"),
        (dict(padding=-1), r"conv_transpose2d: padding must be non-negative, got \(-1, -1\)"),
        (dict(output_padding=(0, -1)), r"conv_transpose2d: output_padding must be non-negative"),
        (dict(dilation=0), r"conv_transpose2d: dilation must be positive"),
        (dict(groups=0), r"conv_transpose2d: groups must be positive, got 0"),
        (dict(groups=-1), r"conv_transpose2d: groups must be positive, got -1"),
        (dict(groups=3), r"conv_transpose2d: input channels \(4\) must be divisible by groups "
                         r"\(3\)"),
        (dict(output_padding=1), r"conv_transpose2d: output_padding must be smaller than either "
                                 r"stride or dilation, got output_padding \(1, 1\), stride "
                                 r"\(1, 1\), dilation \(1, 1\)"),
        (dict(stride=2, output_padding=(0, 2)), r"conv_transpose2d: output_padding must be "
                                                r"smaller"),
        (dict(padding=4), r"conv_transpose2d: output size would be \(-1, -1\), not positive"),
        (dict(stride=(1, 2, 3)), r"conv_transpose2d: stride must be an int or a pair"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv_transpose2d(X, W, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=1.5), r"conv_transpose2d: stride must be an int"),
        (dict(output_padding=True), r"conv_transpose2d: output_padding must be an int"),
        (dict(padding="same"), r"conv_transpose2d: padding must be an int"),
        (dict(groups=2.0), r"conv_transpose2d: groups must be an int"),
    ],
)
def test_bad_argument_types_raise_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.conv_transpose2d(X, W, **kwargs)


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, match",
    [
        ((5, 5), (4, 3, 3, 3), None, r"conv_transpose2d: expected a 3-D \(C_in, H, W\) or 4-D"),
        ((2, 4, 5, 5), (4, 3, 3), None, r"conv_transpose2d: expected a 4-D weight"),
        ((2, 4, 5, 5), (4, 3, 3, 3), (4,), r"conv_transpose2d: bias must have shape \(3,\)"),
        ((2, 4, 0, 5), (4, 3, 3, 3), None, r"conv_transpose2d: input height and width must be "
                                           r"positive"),
    ],
)
def test_bad_shapes_raise_value_error(x_shape, w_shape, b_shape, match):
    b = None if b_shape is None else np.zeros(b_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        F.conv_transpose2d(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), b)


# --- the layer ---------------------------------------------------------------------


def test_layer_shapes_params_init_and_repr():
    cnnrs.manual_seed(0)
    up = nn.ConvTranspose2d(128, 64, 2, stride=2)
    assert up.weight.shape == (128, 64, 2, 2)
    assert up.bias.shape == (64,)
    assert sum(p.numel() for p in up.parameters()) == 128 * 64 * 4 + 64
    assert up(cnnrs.randn(1, 128, 7, 7)).shape == (1, 64, 14, 14)
    assert repr(up) == "ConvTranspose2d(128, 64, kernel_size=(2, 2), stride=(2, 2))"
    # PyTorch's fan-in for a transposed weight is size(1)*kH*kW = 64*4.
    bound = 1.0 / math.sqrt(64 * 4)
    wv = up.weight.numpy()
    assert np.abs(wv).max() <= bound and np.abs(wv).max() > 0.95 * bound
    assert abs(wv.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert np.abs(up.bias.numpy()).max() <= bound

    layer = nn.ConvTranspose2d(4, 6, (3, 5), stride=(2, 1), padding=1, output_padding=(1, 0),
                               groups=2, bias=False, dilation=(1, 2))
    assert layer.weight.shape == (4, 3, 3, 5)
    assert layer.bias is None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert repr(layer) == ("ConvTranspose2d(4, 6, kernel_size=(3, 5), stride=(2, 1), "
                           "padding=(1, 1), output_padding=(1, 0), dilation=(1, 2), groups=2, "
                           "bias=False)")
    # H: (5-1)*2 - 2 + 2 + 1 + 1 = 10; W: (6-1) - 2 + 8 + 0 + 1 = 12.
    x = cnnrs.randn(2, 4, 5, 6)
    y = layer(x)
    assert y.shape == (2, 6, 10, 12)
    want = np_conv_transpose2d(x.numpy(), layer.weight.numpy(), stride=(2, 1), padding=1,
                               output_padding=(1, 0), groups=2, dilation=(1, 2))
    np.testing.assert_allclose(y.numpy(), want, rtol=RTOL, atol=ATOL)


def test_layer_output_size_argument():
    up = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    x = cnnrs.randn(1, 2, 6, 6)
    assert up(x).shape == (1, 2, 11, 11)
    assert up(x, output_size=(12, 11)).shape == (1, 2, 12, 11)
    assert up(x, output_size=(1, 2, 12, 12)).shape == (1, 2, 12, 12)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: requested an output size of "
                                         r"\(13, 12\), but valid sizes along dim 2 range from "
                                         r"11 to 12"):
        up(x, output_size=(13, 12))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((0, 4, 3), {}, ValueError, r"ConvTranspose2d: in_channels and out_channels must be "
                                    r"positive"),
        ((4, 4, 0), {}, ValueError, r"ConvTranspose2d: kernel_size must be positive"),
        ((4, 4, 3), dict(stride=-1), ValueError, r"ConvTranspose2d: stride must be positive"),
        ((4, 4, 3), dict(padding=-1), ValueError, r"ConvTranspose2d: padding must be "
                                                  r"non-negative"),
        ((4, 4, 3), dict(output_padding=2, stride=2), ValueError,
         r"ConvTranspose2d: output_padding must be smaller than either stride or dilation"),
        ((4, 4, 3), dict(groups=3), ValueError, r"ConvTranspose2d: in_channels \(4\) must be "
                                                r"divisible by groups \(3\)"),
        ((4, 6, 3), dict(groups=4), ValueError, r"ConvTranspose2d: out_channels \(6\) must be "
                                                r"divisible by groups \(4\)"),
        ((4, 4, 3.0), {}, TypeError, r"ConvTranspose2d: kernel_size must be an int"),
        ((4, 4, 3), dict(bias="yes"), TypeError, r"ConvTranspose2d: bias must be a bool"),
    ],
)
def test_layer_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.ConvTranspose2d(*args, **kwargs)

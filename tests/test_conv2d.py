"""conv2d and nn.Conv2d against an independent numpy float64 implementation."""

import math

import numpy as np
import pytest

import cnnrs
from cnnrs import nn
from cnnrs.nn import functional as F
from conftest import numeric_grad_inplace as numeric_grad

# f32 results vs a float64 reference. Each output sums up to C_in/groups*kH*kW
# (<= 3*49 here) products of O(1) values, so the absolute tolerance is a few
# float32 ulps of such a sum.
RTOL, ATOL = 1e-4, 2e-5


# --- the numpy reference -------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _resolve_padding(padding, k, dilation):
    """(top, bottom, left, right); 'same' puts the odd pixel bottom/right."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        th = dilation[0] * (k[0] - 1)
        tw = dilation[1] * (k[1] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct float64 convolution: pad, then for every kernel tap gather the
    strided window and contract it with that tap of the weight."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    n, c_in, _, _ = x.shape
    c_out, c_in_g, kh, kw = w.shape
    assert c_in == c_in_g * groups
    pt, pb, pl, pr = _resolve_padding(padding, (kh, kw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    h_out = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    w_out = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c_out, h_out, w_out))
    c_out_g = c_out // groups
    for g in range(groups):
        xg = xp[:, g * c_in_g:(g + 1) * c_in_g]
        wg = w[g * c_out_g:(g + 1) * c_out_g]
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dh, j * dw
                win = xg[:, :, r0:r0 + sh * (h_out - 1) + 1:sh, c0:c0 + sw * (w_out - 1) + 1:sw]
                out[:, g * c_out_g:(g + 1) * c_out_g] += np.einsum(
                    "nchw,oc->nohw", win, wg[:, :, i, j]
                )
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out




# --- random configurations -------------------------------------------------------

KERNELS = [(1, 1), (1, 3), (3, 1), (3, 3), (5, 5), (7, 7), (2, 2), (4, 3)]


def random_config(rng):
    kh, kw = KERNELS[rng.integers(len(KERNELS))]
    groups = int(rng.integers(1, 4))
    c_in_g = 1 if rng.random() < 0.25 else int(rng.integers(1, 4))
    c_out = groups * int(rng.integers(1, 4))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    kind = rng.integers(5)
    if kind == 0:
        padding = int(rng.integers(0, 3))
    elif kind == 1:
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    elif kind == 2:
        padding = "valid"
    elif kind == 3:
        padding = "same"
        stride = (1, 1)
    else:
        padding = 0
    pt, pb, pl, pr = _resolve_padding(padding, (kh, kw), dilation)
    span_h = dilation[0] * (kh - 1) + 1
    span_w = dilation[1] * (kw - 1) + 1
    h = max(1, span_h - pt - pb) + int(rng.integers(0, 6))
    w = max(1, span_w - pl - pr) + int(rng.integers(0, 6))
    # PyTorch accepts ints where both values agree; exercise both spellings.
    as_arg = lambda p: p[0] if p[0] == p[1] and rng.random() < 0.5 else p  # noqa: E731
    return dict(
        x_shape=(int(rng.integers(0, 4)), c_in_g * groups, h, w),
        w_shape=(c_out, c_in_g, kh, kw),
        bias=bool(rng.random() < 0.5),
        stride=as_arg(stride),
        padding=padding,
        dilation=as_arg(dilation),
        groups=groups,
    )


def _draw(rng, cfg):
    x = rng.standard_normal(cfg["x_shape"]).astype(np.float32)
    w = rng.standard_normal(cfg["w_shape"]).astype(np.float32)
    b = rng.standard_normal(cfg["w_shape"][0]).astype(np.float32) if cfg["bias"] else None
    return x, w, b


def _kw(cfg):
    return {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}


@pytest.mark.parametrize("seed", range(40))
def test_forward_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    cfg = random_config(rng)
    x, w, b = _draw(rng, cfg)
    want = np_conv2d(x, w, b, **_kw(cfg))
    got = F.conv2d(x, w, b, **_kw(cfg))
    assert got.shape == want.shape, cfg
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL, err_msg=str(cfg))


@pytest.mark.parametrize("seed", range(40))
def test_backward_matches_numpy_adjoint(seed):
    """Gradients of sum(y * gy) against the float64 reference's adjoints,
    computed here by differentiating the (linear) reference exactly: for each
    kernel tap, dW = <gy, window>, dX = scatter of gy * W."""
    rng = np.random.default_rng(1000 + seed)
    cfg = random_config(rng)
    x, w, b = _draw(rng, cfg)
    out_shape = np_conv2d(x, w, None, **_kw(cfg)).shape
    gy = rng.standard_normal(out_shape).astype(np.float32)
    xt = cnnrs.tensor(x, requires_grad=True)
    wt = cnnrs.tensor(w, requires_grad=True)
    bt = cnnrs.tensor(b, requires_grad=True) if b is not None else None
    F.conv2d(xt, wt, bt, **_kw(cfg)).backward(gy)
    # Reference gradients by linearity: d/dparam of <conv(x, w, b), gy>.
    gx_ref, gw_ref = _np_adjoints(x, w, gy, cfg)
    # dW and db sum over N*H_out*W_out positions (up to a few hundred):
    # slightly looser absolute tolerance.
    np.testing.assert_allclose(xt.grad.numpy(), gx_ref, rtol=RTOL, atol=ATOL, err_msg=str(cfg))
    np.testing.assert_allclose(wt.grad.numpy(), gw_ref, rtol=RTOL, atol=1e-4, err_msg=str(cfg))
    if bt is not None:
        np.testing.assert_allclose(
            bt.grad.numpy(), gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=RTOL, atol=1e-4
        )


def _np_adjoints(x, w, gy, cfg):
    """dX and dW of <np_conv2d(x, w), gy> by applying the reference to basis
    vectors would be slow; instead differentiate each tap's einsum."""
    sh, sw = _pair(cfg["stride"])
    dh, dw = _pair(cfg["dilation"])
    groups = cfg["groups"]
    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    c_out, c_in_g, kh, kw = w.shape
    pt, pb, pl, pr = _resolve_padding(cfg["padding"], (kh, kw), (dh, dw))
    xp = np.pad(x64, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w64)
    h_out, w_out = gy.shape[2:]
    c_out_g = c_out // groups
    for g in range(groups):
        ci = slice(g * c_in_g, (g + 1) * c_in_g)
        co = slice(g * c_out_g, (g + 1) * c_out_g)
        for i in range(kh):
            for j in range(kw):
                rs = slice(i * dh, i * dh + sh * (h_out - 1) + 1, sh)
                cs = slice(j * dw, j * dw + sw * (w_out - 1) + 1, sw)
                win = xp[:, ci, rs, cs]
                gw[co, :, i, j] += np.einsum("nchw,nohw->oc", win, gy64[:, co])
                gxp[:, ci, rs, cs] += np.einsum("nohw,oc->nchw", gy64[:, co], w64[co, :, i, j])
    gx = gxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return gx, gw


@pytest.mark.parametrize(
    "cfg",
    [
        dict(x_shape=(2, 2, 5, 6), w_shape=(4, 1, 3, 2), stride=(2, 1), padding=(1, 2),
             dilation=(1, 2), groups=2),
        dict(x_shape=(1, 3, 4, 5), w_shape=(2, 3, 2, 2), stride=1, padding="same",
             dilation=1, groups=1),
        dict(x_shape=(2, 3, 4, 4), w_shape=(3, 1, 3, 3), stride=1, padding=1,
             dilation=1, groups=3),
        dict(x_shape=(2, 2, 3, 3), w_shape=(3, 2, 1, 1), stride=1, padding=0,
             dilation=1, groups=1),
    ],
)
def test_gradients_match_finite_differences(cfg):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][0])
    kw = _kw(cfg)
    gy = rng.standard_normal(np_conv2d(x, w, None, **kw).shape)
    # Use float32-representable values so both sides see the same inputs.
    x, w, b, gy = (a.astype(np.float32).astype(np.float64) for a in (x, w, b, gy))

    def loss():
        return float((np_conv2d(x, w, b, **kw) * gy).sum())

    nx, nw, nb = numeric_grad(loss, x), numeric_grad(loss, w), numeric_grad(loss, b)
    xt = cnnrs.tensor(x, requires_grad=True)
    wt = cnnrs.tensor(w, requires_grad=True)
    bt = cnnrs.tensor(b, requires_grad=True)
    F.conv2d(xt, wt, bt, **kw).backward(gy.astype(np.float32))
    np.testing.assert_allclose(xt.grad.numpy(), nx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wt.grad.numpy(), nw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bt.grad.numpy(), nb, rtol=1e-4, atol=1e-4)


def test_same_padding_with_even_kernel_pads_bottom_right():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 5, 6)).astype(np.float32)
    w = rng.standard_normal((1, 1, 2, 4)).astype(np.float32)
    y = F.conv2d(x, w, padding="same")
    assert y.shape == (1, 1, 5, 6)
    # Total padding 1 (rows) and 3 (columns): top 0, bottom 1, left 1, right 2.
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (0, 1), (1, 2)))
    want = np_conv2d(xp, w, padding=0)
    np.testing.assert_allclose(y.numpy(), want, rtol=RTOL, atol=ATOL)


def test_unbatched_input_and_zero_batch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (4, 8, 8)
    np.testing.assert_allclose(y.numpy(), np_conv2d(x[None], w, padding=1)[0], rtol=RTOL,
                               atol=ATOL)
    y = F.conv2d(np.zeros((0, 3, 8, 8), np.float32), w, np.ones(4, np.float32))
    assert y.shape == (0, 4, 6, 6)


def test_no_grad_records_nothing_and_grads_accumulate():
    rng = np.random.default_rng(5)
    x = cnnrs.tensor(rng.standard_normal((2, 2, 5, 5)), requires_grad=True)
    w = cnnrs.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    with cnnrs.no_grad():
        y = F.conv2d(x, w)
    assert not y.requires_grad
    y = F.conv2d(x, w)
    assert y.grad_fn == "Conv2dBackward"
    y.sum().backward()
    first = w.grad.numpy()
    F.conv2d(x, w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * first, rtol=1e-6)


def test_repeated_backward_is_bit_identical():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((6, 16, 20, 20)).astype(np.float32)
    grads = []
    for _ in range(3):
        wt = cnnrs.tensor(w, requires_grad=True)
        xt = cnnrs.tensor(x, requires_grad=True)
        F.conv2d(xt, wt, padding=1, groups=2).backward(gy)
        grads.append((xt.grad.numpy().tobytes(), wt.grad.numpy().tobytes()))
    assert grads[0] == grads[1] == grads[2]


# --- errors -------------------------------------------------------------------------


X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


def test_channel_mismatch_message():
    x = np.zeros((8, 3, 32, 32), np.float32)
    w = np.zeros((16, 4, 3, 3), np.float32)
    msg = ("conv2d: input has 3 channels but weight expects 4 (groups=1); "
           "input (8, 3, 32, 32), weight (16, 4, 3, 3)")
    with pytest.raises(ValueError) as e:
        F.conv2d(x, w)
    assert str(e.value) == msg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=0), r"conv2d: stride must be positive, got \(0, 0\)"),
        (dict(stride=(1, -2)), r"conv2d: stride must be positive, got \(1, -2\)"),
        (dict(dilation=-1), r"conv2d: dilation must be positive"),
        (dict(dilation=(0, 1)), r"conv2d: dilation must be positive"),
        (dict(padding=-1), r"conv2d: padding must be non-negative"),
        (dict(padding=(0, -3)), r"conv2d: padding must be non-negative"),
        (dict(padding="full"), r"conv2d: padding must be 'same', 'valid'"),
        (dict(padding="same", stride=2), r"conv2d: padding='same' is not supported"),
        (dict(groups=0), r"conv2d: groups must be positive, got 0"),
        (dict(groups=-2), r"conv2d: groups must be positive, got -2"),
        (dict(groups=3), r"conv2d: input channels \(4\) must be divisible by groups \(3\)"),
        (dict(stride=(1, 2, 3)), r"conv2d: stride must be an int or a pair"),
        (dict(stride=2**70), r"conv2d: stride .* out of range"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(X, W, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stride=True), r"conv2d: stride must be an int"),
        (dict(stride=1.0), r"conv2d: stride must be an int"),
        (dict(stride=(1, 1.5)), r"conv2d: stride must be an int"),
        (dict(padding=None), r"conv2d: padding must be an int"),
        (dict(padding=(True, 0)), r"conv2d: padding must be an int"),
        (dict(dilation="2"), r"conv2d: dilation must be an int"),
        (dict(groups=True), r"conv2d: groups must be an int"),
        (dict(groups=1.0), r"conv2d: groups must be an int"),
    ],
)
def test_bad_argument_types_raise_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.conv2d(X, W, **kwargs)


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, kwargs, match",
    [
        ((8, 8), (6, 4, 3, 3), None, {}, r"conv2d: expected a 3-D \(C_in, H, W\) or 4-D"),
        ((1, 2, 4, 8, 8), (6, 4, 3, 3), None, {}, r"conv2d: expected a 3-D .* \(1, 2, 4, 8, 8\)"),
        ((2, 4, 8, 8), (6, 4, 3), None, {}, r"conv2d: expected a 4-D weight"),
        ((2, 4, 8, 8), (5, 2, 3, 3), None, dict(groups=2),
         r"conv2d: output channels \(5, weight dim 0\) must be divisible by groups \(2\)"),
        ((2, 4, 8, 8), (6, 1, 3, 3), None, dict(groups=2),
         r"conv2d: input has 4 channels but weight expects 2 \(groups=2\)"),
        ((2, 4, 8, 8), (6, 4, 3, 3), (5,), {}, r"conv2d: bias must have shape \(6,\)"),
        ((2, 4, 8, 8), (6, 4, 3, 3), (1, 6), {}, r"conv2d: bias .* got shape \(1, 6\)"),
        ((2, 4, 4, 4), (6, 4, 5, 5), None, {}, r"conv2d: kernel size \(5, 5\) .* larger than "
                                               r"the padded input \(4, 4\)"),
        ((2, 4, 4, 4), (6, 4, 3, 3), None, dict(dilation=2),
         r"conv2d: .* spans \(5, 5\), larger than the padded input"),
        ((2, 4, 8, 8), (6, 4, 0, 3), None, {}, r"conv2d: kernel size must be positive"),
    ],
)
def test_bad_shapes_raise_value_error(x_shape, w_shape, b_shape, kwargs, match):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    b = None if b_shape is None else np.zeros(b_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        F.conv2d(x, w, b, **kwargs)


# --- the layer ---------------------------------------------------------------------


def test_conv2d_layer_shapes_params_and_repr():
    conv = nn.Conv2d(3, 16, 3, padding=1)
    assert conv.weight.shape == (16, 3, 3, 3)
    assert conv.bias.shape == (16,)
    assert sum(p.numel() for p in conv.parameters()) == 16 * 3 * 9 + 16
    assert conv(cnnrs.randn(2, 3, 32, 32)).shape == (2, 16, 32, 32)
    assert repr(conv) == "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"

    conv = nn.Conv2d(4, 8, (3, 5), stride=2, dilation=(2, 1), groups=2, bias=False)
    assert conv.weight.shape == (8, 2, 3, 5)
    assert conv.bias is None
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    assert sum(p.numel() for p in conv.parameters()) == 8 * 2 * 15
    assert repr(conv) == ("Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), dilation=(2, 1), "
                          "groups=2, bias=False)")
    # H_out = (17 - 2*2 - 1)//2 + 1 = 7, W_out = (11 - 4 - 1)//2 + 1 = 4
    assert conv(cnnrs.randn(1, 4, 17, 11)).shape == (1, 8, 7, 4)

    conv = nn.Conv2d(2, 2, 4, padding="same")
    assert repr(conv) == "Conv2d(2, 2, kernel_size=(4, 4), stride=(1, 1), padding=same)"
    assert conv(cnnrs.randn(1, 2, 5, 7)).shape == (1, 2, 5, 7)
    assert nn.Conv2d(2, 2, 3, padding="valid")(cnnrs.randn(1, 2, 5, 7)).shape == (1, 2, 3, 5)


def test_conv2d_layer_matches_functional_and_trains():
    cnnrs.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, stride=(1, 2), padding=(2, 1), groups=3)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    want = np_conv2d(x, conv.weight.numpy(), conv.bias.numpy(), stride=(1, 2), padding=(2, 1),
                     groups=3)
    y = conv(x)
    np.testing.assert_allclose(y.numpy(), want, rtol=RTOL, atol=ATOL)
    y.sum().backward()
    assert conv.weight.grad.shape == (6, 1, 3, 3)
    assert conv.bias.grad.shape == (6,)


@pytest.mark.parametrize("in_ch, out_ch, k, groups", [(3, 16, 3, 1), (8, 4, (5, 3), 2),
                                                       (16, 16, 3, 16)])
def test_conv2d_default_init_bounds(in_ch, out_ch, k, groups):
    cnnrs.manual_seed(123)
    conv = nn.Conv2d(in_ch, out_ch, k, groups=groups)
    kh, kw = (k, k) if isinstance(k, int) else k
    fan_in = in_ch // groups * kh * kw
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias rule agree
    w, b = conv.weight.numpy(), conv.bias.numpy()
    assert w.shape == (out_ch, in_ch // groups, kh, kw)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # Uniform(-bound, bound) has std bound/sqrt(3); loose check of the spread.
    assert 0.5 * bound / math.sqrt(3) < w.std() < 1.5 * bound / math.sqrt(3)
    cnnrs.manual_seed(123)
    np.testing.assert_array_equal(nn.Conv2d(in_ch, out_ch, k, groups=groups).weight.numpy(), w)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((3, 16, 3), dict(groups=2), ValueError, r"Conv2d: in_channels \(3\) must be divisible"),
        ((4, 6, 3), dict(groups=4), ValueError, r"Conv2d: out_channels \(6\) must be divisible"),
        ((4, 4, 3), dict(groups=0), ValueError, r"Conv2d: groups must be positive"),
        ((4, 4, 3), dict(padding="same", stride=2), ValueError,
         r"Conv2d: padding='same' is not supported"),
        ((4, 4, 3), dict(padding="circular"), ValueError, r"Conv2d: padding must be 'same'"),
        ((4, 4, 3), dict(padding=-1), ValueError, r"Conv2d: padding must be non-negative"),
        ((4, 4, 0), {}, ValueError, r"Conv2d: kernel_size must be positive"),
        ((4, 4, 3), dict(stride=(1, 0)), ValueError, r"Conv2d: stride must be positive"),
        ((0, 4, 3), {}, ValueError, r"Conv2d: in_channels and out_channels must be positive"),
        ((4.0, 4, 3), {}, TypeError, r"Conv2d: in_channels must be an int"),
        ((4, 4, (3, 3, 3)), {}, ValueError, r"Conv2d: kernel_size must be an int or a pair"),
        ((4, 4, True), {}, TypeError, r"Conv2d: kernel_size must be an int"),
        ((4, 4, 3), dict(bias="yes"), TypeError, r"Conv2d: bias must be a bool"),
    ],
)
def test_conv2d_layer_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.Conv2d(*args, **kwargs)

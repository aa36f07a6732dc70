"""F.center_crop against numpy slicing; the gradient is the crop's
gradient padded back with zeros."""

import numpy as np
import pytest

import cnnrs
from cnnrs.nn import functional as F


def np_center_crop(x, h, w):
    H, W = x.shape[-2:]
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


@pytest.mark.parametrize("seed", range(25))
def test_matches_numpy_slicing_and_pads_the_gradient_back(seed):
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(2, 5))
    shape = tuple(int(v) for v in rng.integers(1, 9, nd))
    h, w = int(rng.integers(1, shape[-2] + 1)), int(rng.integers(1, shape[-1] + 1))
    x = rng.standard_normal(shape).astype(np.float32)
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.center_crop(xt, (h, w))
    want = np_center_crop(x, h, w)
    np.testing.assert_array_equal(y.numpy(), want)
    g = rng.standard_normal(want.shape).astype(np.float32)
    y.backward(g)
    gx = np.zeros(shape, np.float32)
    np_center_crop(gx, h, w)[...] = g
    np.testing.assert_array_equal(xt.grad.numpy(), gx)


def test_unet_valid_crop_and_odd_margins():
    # The U-Net's first skip: 64x64 cropped to 56x56 keeps rows/cols 4..60.
    x = np.arange(64 * 64, dtype=np.float32).reshape(1, 1, 64, 64)
    y = F.center_crop(x, 56)
    assert y.shape == (1, 1, 56, 56)
    assert y.numpy()[0, 0, 0, 0] == x[0, 0, 4, 4]
    # Odd margin (5 -> 2: 3 spare rows): one on top, two at the bottom.
    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    assert F.center_crop(x, (2, 1)).numpy().ravel().tolist() == [1, 2]
    xt = cnnrs.tensor(x, requires_grad=True)
    y = F.center_crop(xt, [5, 1])
    assert y.grad_fn == "CenterCropBackward"
    np.testing.assert_array_equal(y.numpy(), x)


@pytest.mark.parametrize(
    "shape, size, exc, match",
    [
        ((1, 2, 8, 8), (10, 8), ValueError, r"center_crop: crop size \(10, 8\) is larger than the "
                                            r"input's spatial size \(8, 8\); input \(1, 2, 8, 8\)"),
        ((1, 2, 8, 8), 0, ValueError, r"center_crop: crop size must be positive, got \(0, 0\)"),
        ((1, 2, 8, 8), (4, -1), ValueError, r"center_crop: crop size must be positive"),
        ((8,), 4, ValueError, r"center_crop: expected an input with at least 2 dimensions"),
        ((8, 8), (1, 2, 3), ValueError, r"center_crop: size must be an int or a pair"),
        ((8, 8), 2.5, TypeError, r"center_crop: size must be an int"),
    ],
)
def test_bad_arguments(shape, size, exc, match):
    with pytest.raises(exc, match=match):
        F.center_crop(np.zeros(shape, np.float32), size)

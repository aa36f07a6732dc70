"""Fused conv + bias + ReLU: same values and gradients as the two ops apart."""

import numpy as np

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import nn
from conftest import assert_close


def test_conv2d_relu_equals_relu_of_conv2d_forward_and_backward():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w0 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b0 = rng.standard_normal(4).astype(np.float32)
    g = cnnrs.tensor(rng.standard_normal((2, 4, 5, 4)))
    outs, grads = [], []
    for fused in (True, False):
        x, w, b = (cnnrs.tensor(v, requires_grad=True) for v in (x0, w0, b0))
        y = (F.conv2d_relu(x, w, b, stride=2, padding=1) if fused
             else F.relu(F.conv2d(x, w, b, stride=2, padding=1)))
        (y * g).sum().backward()
        outs.append(y.numpy())
        grads.append([t.grad.numpy() for t in (x, w, b)])
    assert np.array_equal(outs[0], outs[1])
    assert (outs[0] == 0).any() and (outs[0] > 0).any()
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_sequential_fuses_conv_relu_and_matches_unfused():
    cnnrs.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.ReLU())
    x = cnnrs.tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 5)), requires_grad=True)
    y = seq(x)
    assert y.grad_fn == "Conv2dBackward"  # the last ReLU ran inside the convolution
    manual = F.relu(seq[2](F.relu(seq[0](x))))
    assert np.array_equal(y.numpy(), manual.numpy())
    y.sum().backward()
    gx = x.grad.numpy()
    x.grad = None
    manual.sum().backward()
    assert_close(gx, x.grad.numpy(), rtol=1e-6, atol=1e-6)

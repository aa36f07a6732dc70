"""SGD against PyTorch's update rule written out in numpy (float64)."""

import numpy as np
import pytest

import cnnrs
from cnnrs import nn
from cnnrs.optim import SGD
from conftest import assert_close


def numpy_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p = p.astype(np.float64).copy()
    buf = None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p -= lr * d
    return p


@pytest.mark.parametrize("cfg", [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=1e-2),
    dict(lr=0.01, momentum=0.8, weight_decay=5e-4, nesterov=True),
])
def test_sgd_matches_reference(cfg):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(5)]
    p = nn.Parameter(p0)
    opt = SGD([p], **cfg)
    for g in grads:
        p.grad = g
        opt.step()
    assert_close(p.numpy(), numpy_sgd(p0, grads, **cfg), rtol=1e-5, atol=1e-6)


def test_param_groups_lr_edit_and_skip_without_grad():
    a = nn.Parameter(np.ones(2, dtype=np.float32))
    b = nn.Parameter(np.ones(2, dtype=np.float32))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.5)
    a.grad = np.ones(2, dtype=np.float32)
    opt.step()
    assert a.numpy().tolist() == [0.5, 0.5] and b.numpy().tolist() == [1.0, 1.0]
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert a.numpy().tolist() == [0.25, 0.25]
    opt.zero_grad()
    assert a.grad is None


def test_sgd_bad_arguments():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match="SGD: invalid lr"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="not a cnnrs Tensor"):
        SGD([np.ones(2)], lr=0.1)
    opt = SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = float("nan")
    p.grad = np.ones(2, dtype=np.float32)
    with pytest.raises(ValueError, match="SGD: invalid lr"):
        opt.step()


def test_step_keeps_graph_values_intact():
    # A graph built before the step still sees the old value (copy on write).
    p = nn.Parameter(np.array([2.0], dtype=np.float32))
    y = p * p
    p.grad = np.array([1.0], dtype=np.float32)
    SGD([p], lr=1.0).step()
    assert p.numpy().tolist() == [1.0]
    p.grad = None
    y.backward()
    assert p.grad.numpy().tolist() == [4.0]
    assert cnnrs.is_grad_enabled()


def numpy_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
               decoupled=False):
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        vmax = np.maximum(vmax, v)
        vv = vmax if amsgrad else v
        p -= lr * (m / (1 - betas[0] ** t)) / (np.sqrt(vv / (1 - betas[1] ** t)) + eps)
    return p


@pytest.mark.parametrize("cls,cfg", [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=5e-3, betas=(0.8, 0.99), weight_decay=0.3, amsgrad=True)),
])
def test_adam_adamw_match_reference(cls, cfg):
    from cnnrs import optim

    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]
    p = nn.Parameter(p0)
    opt = getattr(optim, cls)([p], **cfg)
    for g in grads:
        p.grad = g
        opt.step()
    full = dict(cfg)
    if cls == "AdamW":
        full.setdefault("weight_decay", 1e-2)
    want = numpy_adam(p0, grads, decoupled=cls == "AdamW", **full)
    assert_close(p.numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=f"{cls}: invalid beta parameter at index 1"):
        getattr(optim, cls)([p], betas=(0.9, 1.0))


def test_lr_schedules_closed_forms():
    import math

    from cnnrs.optim import lr_scheduler as sch

    def lrs(make, n):
        p = nn.Parameter(np.ones(1, dtype=np.float32))
        opt = SGD([p], lr=0.1)
        s = make(opt)
        out = [opt.param_groups[0]["lr"]]
        for _ in range(n):
            opt.step()
            s.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    assert_close(lrs(lambda o: sch.StepLR(o, 2, 0.5), 5), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert_close(lrs(lambda o: sch.MultiStepLR(o, [1, 3], 0.1), 3), [0.1, 0.01, 0.01, 0.001])
    cos = lrs(lambda o: sch.CosineAnnealingLR(o, 4), 4)
    assert_close(cos, [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)])
    # OneCycleLR: PyTorch's values for max_lr=1, total_steps=10 (pct_start 0.3).
    one = lrs(lambda o: sch.OneCycleLR(o, max_lr=1.0, total_steps=10), 9)
    assert_close(one[:4], [0.04, 0.52, 1.0, 0.950484], rtol=1e-5)
    assert_close(one[-1], 0.04 / 1e4, rtol=1e-5)
    with pytest.raises(ValueError, match="OneCycleLR: give total_steps"):
        sch.OneCycleLR(SGD([nn.Parameter(np.ones(1))], lr=0.1), max_lr=1.0)

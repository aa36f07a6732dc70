"""Tensor construction, conversion, arithmetic with broadcasting, reductions,
reshape and autograd, against numpy (float64) and finite differences."""

import numpy as np
import pytest

import cnnrs
from conftest import assert_close, numeric_grad


def rand_broadcast_pair(rng):
    nd = rng.integers(1, 5)
    full = rng.integers(1, 5, size=nd)
    a, b = full.copy(), full.copy()
    for d in range(nd):
        r = rng.integers(0, 4)
        if r == 0:
            a[d] = 1
        elif r == 1:
            b[d] = 1
    drop = rng.integers(0, nd)
    if rng.integers(0, 2):
        b = b[drop:]
    else:
        a = a[drop:]
    return tuple(int(v) for v in a), tuple(int(v) for v in b)


OPS = {
    "add": (lambda a, b: a + b),
    "sub": (lambda a, b: a - b),
    "mul": (lambda a, b: a * b),
    "div": (lambda a, b: a / b),
}


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("op", list(OPS))
def test_binary_ops_broadcast_like_numpy(seed, op):
    rng = np.random.default_rng(seed)
    sa, sb = rand_broadcast_pair(rng)
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    b = np.sign(b) * (np.abs(b) + 0.5)
    f = OPS[op]
    ta = cnnrs.tensor(a, requires_grad=True)
    tb = cnnrs.tensor(b, requires_grad=True)
    out = f(ta, tb)
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    assert out.shape == np.broadcast(a, b).shape
    assert_close(out.numpy(), f(a32, b32), what=op)
    w = rng.standard_normal(out.shape)
    (out * cnnrs.tensor(w)).sum().backward()
    ga = numeric_grad(lambda x: np.sum(f(x, b32) * w), a32)
    gb = numeric_grad(lambda x: np.sum(f(a32, x) * w), b32)
    assert_close(ta.grad.numpy(), ga, rtol=1e-3, atol=1e-4, what=f"{op} grad a")
    assert_close(tb.grad.numpy(), gb, rtol=1e-3, atol=1e-4, what=f"{op} grad b")


def test_scalar_operators_and_neg():
    x = cnnrs.tensor([1.0, -2.0, 4.0], requires_grad=True)
    y = (2 - x) * 3 + x / 2 - 1 + (-x)
    v = np.array([1, -2, 4.0])
    expect = (2 - v) * 3 + v / 2 - 1 - v
    assert_close(y.numpy(), expect)
    y.sum().backward()
    assert_close(x.grad.numpy(), np.full(3, -3 + 0.5 - 1))
    z = 1.0 / cnnrs.tensor([2.0, 4.0])
    assert_close(z.numpy(), [0.5, 0.25])


@pytest.mark.parametrize("seed", range(10))
def test_sum_mean_over_dims(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 5, size=rng.integers(1, 5)))
    x = rng.standard_normal(shape).astype(np.float32)
    t = cnnrs.tensor(x, requires_grad=True)
    dim = int(rng.integers(-len(shape), len(shape)))
    keep = bool(rng.integers(0, 2))
    assert_close(t.sum(dim, keep).numpy(), x.astype(np.float64).sum(dim, keepdims=keep))
    assert_close(t.mean(dim, keep).numpy(), x.astype(np.float64).mean(dim, keepdims=keep))
    assert_close(t.sum().item(), x.astype(np.float64).sum(), rtol=1e-5)
    t.mean().backward()
    assert_close(t.grad.numpy(), np.full(shape, 1 / x.size))


def test_reshape_flatten_and_errors():
    x = cnnrs.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), requires_grad=True)
    assert x.reshape(-1, 4).shape == (6, 4)
    assert x.reshape((4, 6)).shape == (4, 6)
    assert x.flatten(1).shape == (2, 12)
    y = x.reshape(6, 4) * 2
    y.sum().backward()
    assert x.grad.shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"reshape: .*\(2, 3, 4\)"):
        x.reshape(5, -1)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        x.reshape(-1, -1)
    with pytest.raises(TypeError, match="reshape"):
        x.reshape(2.5, 4)
    with pytest.raises(ValueError, match="sum: dim 3 is out of range"):
        x.sum(3)


def test_dtype_conversion_and_refusal():
    assert cnnrs.tensor(np.arange(3)).numpy().dtype == np.float32
    assert cnnrs.tensor(np.array([True, False])).numpy().tolist() == [1.0, 0.0]
    assert cnnrs.tensor(np.ones((2, 2), dtype=np.float64)).numpy().dtype == np.float32
    # Non-contiguous input is copied correctly.
    base = np.arange(20, dtype=np.float32).reshape(4, 5)
    assert_close(cnnrs.tensor(base[:, ::2]).numpy(), base[:, ::2])
    ro = np.ones(3, dtype=np.float32)
    ro.setflags(write=False)
    assert cnnrs.tensor(ro).numpy().tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="object"):
        cnnrs.tensor(np.array([object()]))
    with pytest.raises(TypeError, match="complex"):
        cnnrs.tensor(np.array([1j]))
    with pytest.raises(TypeError, match="str"):
        cnnrs.tensor(["a", "b"])
    with pytest.raises(TypeError, match="from_numpy"):
        cnnrs.from_numpy([1.0, 2.0])


def test_numpy_is_a_copy_and_item():
    t = cnnrs.tensor([[3.0]])
    a = t.numpy()
    a[0, 0] = 7
    assert t.item() == 3.0
    with pytest.raises(ValueError, match="item: only one-element"):
        cnnrs.tensor([1.0, 2.0]).item()


def test_autograd_rules():
    x = cnnrs.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="implicitly created only for scalar"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="does not require grad"):
        cnnrs.tensor([1.0]).backward()
    y = x * x
    y.backward(cnnrs.tensor([1.0, 1.0]))
    assert x.grad.numpy().tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match="gradient has shape"):
        (x * x).backward(np.ones(3, dtype=np.float32))
    # detach cuts the graph
    d = (x * 3).detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert (x * 3).grad_fn == "AffineBackward"
    with pytest.raises(ValueError, match="leaf"):
        (x * 3).requires_grad_(False)


def test_no_grad_context_and_decorator():
    x = cnnrs.tensor([1.0], requires_grad=True)
    with cnnrs.no_grad():
        assert not cnnrs.is_grad_enabled()
        y = x * 2
        with cnnrs.enable_grad():
            z = x * 2
    assert cnnrs.is_grad_enabled()
    assert not y.requires_grad and z.requires_grad

    @cnnrs.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert cnnrs.is_grad_enabled()


def test_repr_and_len():
    t = cnnrs.tensor([[1.0, 2.0]], requires_grad=True)
    assert "requires_grad=True" in repr(t)
    assert "grad_fn=<MulBackward>" in repr(t * t)
    assert len(t) == 1 and t.size() == (1, 2) and t.size(1) == 2 and t.ndim == 2

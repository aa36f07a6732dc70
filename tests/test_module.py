"""nn.Module mechanics: registration, traversal, modes, state dicts, repr."""

from collections import OrderedDict

import numpy as np
import pytest

import cnnrs
from cnnrs import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(np.ones((2, 3), dtype=np.float32))
        self.body = nn.Sequential(nn.ReLU(), nn.Flatten())
        self.register_buffer("count", cnnrs.tensor([0.0]))

    def forward(self, x):
        return self.body(x) * self.w


def test_registration_and_traversal():
    m = Tiny()
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert list(m.state_dict()) == ["w", "count"]
    assert [n for n, _ in m.named_modules()] == ["", "body", "body.0", "body.1"]
    assert len(list(m.children())) == 1
    assert all(p.requires_grad for p in m.parameters())
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())


def test_state_dict_round_trip_and_strict_errors():
    m = Tiny()
    sd = m.state_dict()
    sd["w"] = np.full((2, 3), 5.0, dtype=np.float32)
    m.load_state_dict(sd)
    assert m.w.numpy().tolist() == [[5.0] * 3] * 2
    with pytest.raises(ValueError, match=r"Missing key\(s\): 'count'"):
        m.load_state_dict({"w": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"Unexpected key\(s\): 'extra'"):
        m.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"Size mismatch: w: copying a param with shape \(3, 2\)"):
        m.load_state_dict({**sd, "w": np.zeros((3, 2))})
    missing, unexpected = m.load_state_dict({"w": np.zeros((2, 3)), "zz": np.zeros(1)},
                                            strict=False)
    assert missing == ["count"] and unexpected == ["zz"]
    # A failed load changes nothing.
    before = m.w.numpy().copy()
    with pytest.raises(ValueError):
        m.load_state_dict({"w": np.ones((2, 3)), "count": np.zeros(5)})
    assert np.array_equal(m.w.numpy(), before)


def test_zero_grad_and_forward():
    m = Tiny()
    out = m(cnnrs.tensor(np.ones((2, 3), dtype=np.float32)))
    out.sum().backward()
    assert m.w.grad is not None
    m.zero_grad()
    assert m.w.grad is None


def test_sequential_indexing_and_repr():
    s = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Identity())
    assert len(s) == 3 and isinstance(s[1], nn.Flatten)
    assert isinstance(s[:2], nn.Sequential) and len(s[:2]) == 2
    assert repr(s).startswith("Sequential(\n  (0): ReLU()\n  (1): Flatten(start_dim=1, end_dim=-1)")
    od = nn.Sequential(OrderedDict(a=nn.ReLU()))
    assert [n for n, _ in od.named_children()] == ["a"]
    with pytest.raises(TypeError, match="Sequential: argument 0"):
        nn.Sequential(3)


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()

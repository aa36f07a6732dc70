"""Fuzzing every public op with random (often invalid) shapes and arguments:
each call must return or raise ValueError/TypeError/MemoryError naming the op
— never crash, hang, or leak a Rust panic (RuntimeError "internal error").

The default run draws a few dozen examples per op; `pytest -m slow
tests/test_fuzz.py` runs many more (CNNRS_FUZZ_EXAMPLES, default 2000).
"""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cnnrs  # noqa: E402
import cnnrs.nn.functional as F  # noqa: E402

FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=int(os.environ.get("CNNRS_FUZZ_EXAMPLES", "2000")), deadline=None,
                suppress_health_check=list(HealthCheck))

small = st.integers(min_value=-2, max_value=6)
dims = st.lists(st.integers(min_value=0, max_value=7), min_size=0, max_size=5)
dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.float16])
specials = st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e30, -1e-40])


@st.composite
def arrays(draw, shape=None):
    shape = draw(dims) if shape is None else shape
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    a = (rng.standard_normal(shape) * 3)
    if a.size and draw(st.booleans()):
        a.flat[draw(st.integers(0, a.size - 1))] = draw(specials)
    with np.errstate(invalid="ignore", over="ignore"):
        a = a.astype(dtype) if dtype != np.bool_ else a > 0
    if draw(st.booleans()) and a.ndim >= 1 and a.shape[-1] > 1:
        a = a[..., ::2]  # non-contiguous
    if draw(st.booleans()):
        a.setflags(write=False)
    return a


def pair_or_int(draw_int=small):
    return st.one_of(draw_int, st.tuples(draw_int, draw_int), st.just("same"),
                     st.just("valid"), st.just(2.5), st.just(True), st.none())


def check(op_name, fn):
    """Runs fn; acceptable outcomes are a result or a clear Python error."""
    try:
        out = fn()
    except (ValueError, TypeError, MemoryError) as e:
        msg = str(e)
        assert msg, f"{op_name}: empty error message"
        return None
    except RuntimeError as e:  # a Rust panic surfaces as RuntimeError "internal error"
        raise AssertionError(f"{op_name}: panic reached Python: {e}") from e
    if isinstance(out, tuple):
        out = out[0]
    if isinstance(out, cnnrs.Tensor):
        out.numpy()
    return out


CASES = {
    "conv2d": lambda d: F.conv2d(d(arrays()), d(arrays()), d(st.one_of(st.none(), arrays())),
                                 d(pair_or_int()), d(pair_or_int()), d(pair_or_int()), d(small)),
    "conv_transpose2d": lambda d: F.conv_transpose2d(
        d(arrays()), d(arrays()), None, d(pair_or_int()), d(pair_or_int()), d(small), d(small),
        d(pair_or_int())),
    "max_pool2d": lambda d: F.max_pool2d(d(arrays()), d(pair_or_int()), d(pair_or_int()),
                                         d(pair_or_int()), d(pair_or_int()), d(st.booleans())),
    "avg_pool2d": lambda d: F.avg_pool2d(d(arrays()), d(pair_or_int()), d(pair_or_int()),
                                         d(pair_or_int()), d(st.booleans()), d(st.booleans())),
    "adaptive_avg_pool2d": lambda d: F.adaptive_avg_pool2d(d(arrays()), d(pair_or_int())),
    "linear": lambda d: F.linear(d(arrays()), d(arrays()), d(st.one_of(st.none(), arrays()))),
    "relu": lambda d: F.relu(d(arrays())),
    "softmax": lambda d: F.softmax(d(arrays()), d(small)),
    "log_softmax": lambda d: F.log_softmax(d(arrays()), d(small)),
    "cross_entropy": lambda d: F.cross_entropy(
        d(arrays()), d(st.one_of(arrays(), st.lists(st.integers(-3, 12), max_size=6)))),
    "mse_loss": lambda d: F.mse_loss(d(arrays()), d(arrays())),
    "batch_norm": lambda d: F.batch_norm(d(arrays()), None, None, d(st.one_of(st.none(),
                                         arrays())), None, d(st.booleans())),
    "dropout": lambda d: F.dropout(d(arrays()), d(st.floats(-1, 2))),
    "dropout2d": lambda d: F.dropout2d(d(arrays()), d(st.floats(-1, 2))),
    "cutout": lambda d: F.cutout(d(arrays()), d(small)),
    "max_pool_dropout2d": lambda d: F.max_pool_dropout2d(d(arrays()), d(pair_or_int()),
                                                         d(pair_or_int()), d(st.floats(-1, 2))),
    "locally_connected2d": lambda d: F.locally_connected2d(d(arrays()), d(arrays()), None,
                                                           d(pair_or_int()), d(pair_or_int())),
    "interpolate": lambda d: F.interpolate(
        d(arrays()), size=d(st.one_of(st.none(), pair_or_int())),
        scale_factor=d(st.one_of(st.none(), st.floats(-1, 4))),
        mode=d(st.sampled_from(["nearest", "bilinear", "bicubic", "area"])),
        align_corners=d(st.one_of(st.none(), st.booleans()))),
    "pad": lambda d: F.pad(d(arrays()), d(st.lists(small, max_size=5)),
                           d(st.sampled_from(["constant", "reflect", "replicate", "wrap"]))),
    "cat": lambda d: cnnrs.cat([d(arrays()), d(arrays())], d(small)),
    "add": lambda d: cnnrs.tensor(d(arrays())) + d(arrays()),
    "mul": lambda d: cnnrs.tensor(d(arrays())) * d(arrays()),
    "reshape": lambda d: cnnrs.tensor(d(arrays())).reshape(*d(st.lists(small, max_size=4))),
    "sum": lambda d: cnnrs.tensor(d(arrays())).sum(d(st.one_of(st.none(), small))),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_fuzz_fast(op):
    @FAST
    @given(st.data())
    def run(data):
        check(op, lambda: CASES[op](data.draw))

    run()


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(CASES))
def test_fuzz_slow(op):
    @SLOW
    @given(st.data())
    def run(data):
        check(op, lambda: CASES[op](data.draw))

    run()


@pytest.mark.parametrize("shape", [(2**31, 2**31), (1 << 40,), (1 << 20, 1 << 20, 1 << 20)])
def test_absurd_sizes_raise_instead_of_aborting(shape):
    x = cnnrs.tensor(np.zeros((1, 1), np.float32))
    with pytest.raises((ValueError, MemoryError)):
        x.reshape(*shape)
    with pytest.raises((ValueError, MemoryError)):
        F.interpolate(cnnrs.zeros(1, 1, 2, 2), size=(1 << 30, 1 << 30))
    with pytest.raises((ValueError, MemoryError)):
        F.pad(cnnrs.zeros(1, 1, 2, 2), (1 << 40, 0, 0, 0))

"""cnnrs: train and run convolutional networks on CPUs.

The compute (every op, its backward pass, autograd and the optimizer update)
is Rust; this package is the PyTorch-shaped surface over it.

Memory: on Linux with glibc, importing cnnrs raises glibc's mmap threshold
to 32 MiB and its trim threshold to 512 MiB (``mallopt``), so the large
buffers a training step frees and reallocates are reused instead of being
unmapped and page-faulted back in on every call (2-4x faster for tensors of
tens of MiB); up to ~512 MiB of freed memory may then stay with the process.
Set ``CNNRS_MALLOPT=0`` before the import to keep glibc's defaults.

Example:
    >>> import cnnrs
    >>> from cnnrs import nn
    >>> model = cnnrs.models.lenet5()
    >>> y = model(cnnrs.randn(1, 1, 32, 32))
"""

from . import _native
from ._ops import cat
from ._random import manual_seed
from ._tensor import (
    Tensor,
    as_tensor,
    enable_grad,
    from_numpy,
    is_grad_enabled,
    no_grad,
    ones,
    randn,
    set_grad_enabled,
    tensor,
    zeros,
)

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Sets the number of worker threads the kernels use (at least 1).
    The default is ``CNNRS_NUM_THREADS`` or the number of CPUs."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    _native.set_num_threads(n)


def get_num_threads() -> int:
    """Number of worker threads the kernels use."""
    return _native.get_num_threads()


def __getattr__(name):
    # Sub-packages load on first use so `import cnnrs` stays light.
    import importlib

    if name in {"nn", "optim", "data", "models", "io", "cli", "onnx", "metrics"}:
        return importlib.import_module(f".{name}", __name__)
    if name in {"save", "load"}:  # cnnrs.save(state_dict, path) / cnnrs.load(path)
        return getattr(importlib.import_module(".io", __name__), name)
    raise AttributeError(f"module 'cnnrs' has no attribute '{name}'")


__all__ = [
    "Tensor", "tensor", "from_numpy", "as_tensor", "zeros", "ones", "randn", "cat",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "manual_seed", "set_num_threads", "get_num_threads",
    "nn", "optim", "data", "models", "metrics", "save", "load",
]

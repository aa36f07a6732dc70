"""The user-facing Tensor: a thin handle on a Rust autograd value.

All arithmetic and every gradient are computed in Rust (``cnnrs._native``);
this class only converts arguments and names things the PyTorch way.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _native

__all__ = ["Tensor", "tensor", "from_numpy", "as_tensor", "no_grad", "enable_grad",
           "set_grad_enabled", "is_grad_enabled", "zeros", "ones", "randn"]

_REFUSED_KINDS = {"O": "object", "U": "str", "S": "bytes", "V": "void", "M": "datetime",
                  "m": "timedelta", "c": "complex"}


def _to_f32_array(data: object, op: str = "tensor") -> np.ndarray:
    """Converts array-likes to a float32 array.

    float16/float64, integer and bool arrays are converted to float32 (as
    ``torch.tensor(..., dtype=torch.float32)`` would); object, string and
    complex data are refused with TypeError.
    """
    if isinstance(data, Tensor):
        return data.numpy()
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(
            f"{op}: cannot convert {type(data).__name__} to a float32 array: {e}"
        ) from e
    kind = arr.dtype.kind
    if kind in _REFUSED_KINDS:
        raise TypeError(
            f"{op}: expected numeric data (float32, or float/int/bool converted to float32), "
            f"got dtype {arr.dtype} ({_REFUSED_KINDS[kind]})"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


class Tensor:
    """A float32 n-dimensional array that can record operations for autograd.

    Create one with :func:`cnnrs.tensor` or :func:`cnnrs.from_numpy`. Operators
    (``+ - * /``, unary ``-``) broadcast as in NumPy and PyTorch.

    Differences from PyTorch: the only dtype is float32; ``numpy()`` returns a
    copy (writing to it does not change the tensor).
    """

    __slots__ = ("_v", "__weakref__")

    def __init__(self, data: object = None, requires_grad: bool = False, *, _var=None):
        if _var is not None:
            self._v = _var
        else:
            self._v = _native.Var.from_numpy(_to_f32_array(data), requires_grad)

    # --- construction helpers -------------------------------------------------
    @classmethod
    def _wrap(cls, var) -> Tensor:
        t = Tensor.__new__(Tensor)
        t._v = var
        return t

    # --- properties -------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """The dimensions, as a tuple of ints."""
        return tuple(self._v.shape)

    def size(self, dim: int | None = None):
        """The shape, or one dimension of it (PyTorch's ``size``)."""
        s = self.shape
        return s if dim is None else s[dim]

    @property
    def ndim(self) -> int:
        return len(self._v.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        n = 1
        for d in self._v.shape:
            n *= d
        return n

    @property
    def dtype(self):
        return np.float32

    @property
    def requires_grad(self) -> bool:
        return self._v.requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._v.set_requires_grad(bool(flag))

    def requires_grad_(self, flag: bool = True) -> Tensor:
        self._v.set_requires_grad(bool(flag))
        return self

    @property
    def is_leaf(self) -> bool:
        return self._v.is_leaf

    @property
    def grad_fn(self) -> str | None:
        """Name of the op that produced this tensor (None for leaves)."""
        return self._v.grad_fn

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by :meth:`backward`, or None."""
        g = self._v.grad()
        return None if g is None else Tensor._wrap(g)

    @grad.setter
    def grad(self, value) -> None:
        if value is None:
            self._v.set_grad(None)
        else:
            self._v.set_grad(as_tensor(value)._v)

    # --- conversion -------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The value as a new float32 numpy array (a copy)."""
        return self._v.numpy()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def tolist(self):
        return self.numpy().tolist()

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        return float(self._v.item())

    def detach(self) -> Tensor:
        """Same value, cut from the graph, ``requires_grad=False``."""
        return Tensor._wrap(self._v.detach())

    def clone(self) -> Tensor:
        return Tensor(self.numpy(), requires_grad=False)

    def __float__(self) -> float:
        return self.item()

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # --- autograd ---------------------------------------------------------------
    def backward(self, gradient: object = None) -> None:
        """Computes gradients of this tensor w.r.t. graph leaves (in Rust).

        Args:
            gradient: gradient of some scalar w.r.t. this tensor; may be omitted
                for one-element tensors (defaults to 1).

        Raises:
            ValueError: if the tensor does not require grad, or is not a scalar
                and no gradient is given, or the gradient has the wrong shape.
        """
        g = None if gradient is None else as_tensor(gradient)._v
        self._v.backward(g)

    # --- reductions and shape -----------------------------------------------------
    def sum(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return Tensor._wrap(_native.sum(self._v, dim, keepdim))

    def mean(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return Tensor._wrap(_native.mean(self._v, dim, keepdim))

    def reshape(self, *shape) -> Tensor:
        """The same data with a new shape; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Tensor._wrap(_native.reshape(self._v, [_int(s, "reshape") for s in shape]))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return Tensor._wrap(_native.flatten(self._v, start_dim, end_dim))

    def relu(self) -> Tensor:
        return Tensor._wrap(_native.relu(self._v))

    # --- arithmetic -------------------------------------------------------------
    def __add__(self, other):
        if _is_number(other):
            return Tensor._wrap(_native.affine(self._v, 1.0, float(other)))
        return Tensor._wrap(_native.add(self._v, as_tensor(other)._v))

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        if _is_number(other):
            return Tensor._wrap(_native.affine(self._v, 1.0, -float(other)))
        return Tensor._wrap(_native.sub(self._v, as_tensor(other)._v))

    def __rsub__(self, other):
        if _is_number(other):
            return Tensor._wrap(_native.affine(self._v, -1.0, float(other)))
        return as_tensor(other).__sub__(self)

    def __mul__(self, other):
        if _is_number(other):
            return Tensor._wrap(_native.affine(self._v, float(other), 0.0))
        return Tensor._wrap(_native.mul(self._v, as_tensor(other)._v))

    def __rmul__(self, other):
        return self.__mul__(other)

    def __truediv__(self, other):
        if _is_number(other):
            return Tensor._wrap(_native.affine(self._v, 1.0 / float(other), 0.0))
        return Tensor._wrap(_native.div(self._v, as_tensor(other)._v))

    def __rtruediv__(self, other):
        return as_tensor(other).__truediv__(self)

    def __neg__(self):
        return Tensor._wrap(_native.affine(self._v, -1.0, 0.0))

    def __pos__(self):
        return self

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), precision=4, separator=", ", prefix="tensor(")
        extra = ""
        if self.grad_fn is not None:
            extra = f", grad_fn=<{self.grad_fn}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        return f"tensor({body}{extra})"


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _int(x, op: str) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{op}: expected an int, got {type(x).__name__} ({x!r})")
    return int(x)


def tensor(data: object, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a float32 copy of ``data``.

    Args:
        data: a numpy array, nested lists or a number. float64/int/bool data
            is converted to float32; object, str and complex data raise
            TypeError.
        requires_grad: record operations on it for autograd.

    Example:
        >>> x = cnnrs.tensor([[1.0, 2.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad.numpy()
        array([[2., 4.]], dtype=float32)
    """
    return Tensor(data, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor from a numpy array (float32 data is copied; other numeric
    dtypes are converted to float32). Unlike PyTorch, memory is not shared."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(array).__name__}")
    return Tensor(array)


def as_tensor(x: object) -> Tensor:
    """``x`` if it is a Tensor, else ``tensor(x)``."""
    return x if isinstance(x, Tensor) else Tensor(x)


def zeros(*shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(np.zeros(shape, dtype=np.float32))


def ones(*shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(np.ones(shape, dtype=np.float32))


def randn(*shape, generator: np.random.Generator | None = None) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    rng = generator if generator is not None else np.random.default_rng()
    return Tensor(rng.standard_normal(shape).astype(np.float32))


class set_grad_enabled:
    """Context manager (or plain call) that turns autograd recording on or
    off for the current thread, as ``torch.set_grad_enabled``."""

    def __init__(self, mode: bool):
        self._prev = _native.set_grad_enabled(bool(mode))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _native.set_grad_enabled(self._prev)
        return False


class no_grad:
    """Context manager and decorator: ops inside record no graph.

    Example:
        >>> with cnnrs.no_grad():
        ...     y = model(x)   # y.requires_grad is False
    """

    def __enter__(self):
        self._prev = _native.set_grad_enabled(False)
        return self

    def __exit__(self, *exc):
        _native.set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        import functools

        cls = type(self)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with cls():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Context manager: re-enables recording inside a ``no_grad`` block."""

    def __enter__(self):
        self._prev = _native.set_grad_enabled(True)
        return self


def is_grad_enabled() -> bool:
    return _native.is_grad_enabled()



"""Module, Parameter and the containers, with PyTorch's semantics."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .._tensor import Tensor, _to_f32_array

__all__ = ["Parameter", "Module", "Sequential", "ModuleList"]


class Parameter(Tensor):
    """A Tensor that is a module's learnable weight (``requires_grad=True``).

    Assigning one as an attribute of a :class:`Module` registers it, so it
    appears in ``parameters()`` and ``state_dict()``.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        arr = data.numpy() if isinstance(data, Tensor) else _to_f32_array(data, "Parameter")
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model, as ``torch.nn.Module``.

    Subclasses set parameters and sub-modules as attributes in ``__init__``
    and define ``forward``; calling the module calls ``forward``.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration -----------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() call in {type(self).__name__}"
            )
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Registers ``param`` (or None, a slot such as a missing bias)."""
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Optional[Tensor]) -> None:
        """Registers a non-learnable state tensor (saved in state_dict)."""
        self._buffers[name] = tensor

    def add_module(self, name: str, module: Optional[Module]) -> None:
        self._modules[name] = module

    # --- calling ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- traversal --------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, Module]]:
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[Tuple[str, Parameter]]:
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[Tuple[str, Tensor]]:
        for mprefix, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self) -> Iterator[Tensor]:
        for _, b in self.named_buffers():
            yield b

    # --- modes and grads ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Sets training mode (dropout, batch norm) on this module and all
        sub-modules."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the gradients of all parameters."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros(p.shape, dtype=np.float32)

    # --- state --------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameters and buffers by dotted name, as detached tensors (values
        are copies at the time of the call)."""
        out: "OrderedDict[str, Tensor]" = OrderedDict()
        for mprefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mprefix}.{name}" if mprefix else name] = p.detach()
            for name, b in m._buffers.items():
                if b is not None:
                    key = f"{mprefix}.{name}" if mprefix else name
                    out[key] = b.detach() if isinstance(b, Tensor) else np.array(b)
        return out

    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True):
        """Copies values into this module's parameters and buffers.

        Args:
            state_dict: name -> Tensor or numpy array.
            strict: require exactly the module's keys.

        Returns:
            ``(missing_keys, unexpected_keys)`` as lists.

        Raises:
            ValueError: listing missing, unexpected (strict only) and
                shape-mismatched keys by name.
        """
        own: Dict[str, Tuple[Module, str, bool]] = {}
        for mprefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    own[f"{mprefix}.{name}" if mprefix else name] = (m, name, True)
            for name, b in m._buffers.items():
                if b is not None:
                    own[f"{mprefix}.{name}" if mprefix else name] = (m, name, False)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched: List[str] = []
        values = {}
        for k, (m, name, _) in own.items():
            if k not in state_dict:
                continue
            cur = m._parameters[name] if name in m._parameters else m._buffers[name]
            if isinstance(cur, Tensor):
                arr = _to_f32_array(state_dict[k], "load_state_dict")
            else:  # a numpy buffer (e.g. num_batches_tracked) keeps its dtype
                arr = np.asarray(state_dict[k]).astype(cur.dtype)
            if tuple(arr.shape) != tuple(cur.shape):
                mismatched.append(
                    f"{k}: copying a param with shape {tuple(arr.shape)}, "
                    f"the shape in the current model is {cur.shape}"
                )
            values[k] = arr
        errors = []
        if strict and missing:
            errors.append("Missing key(s): " + ", ".join(repr(k) for k in missing))
        if strict and unexpected:
            errors.append("Unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
        if mismatched:
            errors.append("Size mismatch: " + "; ".join(mismatched))
        if errors:
            raise ValueError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        for k, arr in values.items():
            m, name, _ = own[k]
            cur = m._parameters[name] if name in m._parameters else m._buffers[name]
            if isinstance(cur, Tensor):
                cur._v.set_value(np.ascontiguousarray(arr))
            else:
                m._buffers[name] = arr.copy()
        return missing, unexpected

    def save(self, path: str, metadata: Optional[Dict[str, str]] = None) -> None:
        """Writes ``state_dict()`` to ``path`` in the safetensors format.

        The file loads with ``safetensors.torch.load_file`` into the PyTorch
        twin of the model (same keys and shapes); float tensors are F32,
        ``num_batches_tracked`` is I64. The write is atomic (temporary file,
        fsync, rename): a crash leaves the old file intact.

        Args:
            path: destination file (conventionally ``*.safetensors``).
            metadata: optional ``str -> str`` stored in the header.

        Example:
            >>> model.save("lenet.safetensors")
        """
        from .. import io

        io.save(self.state_dict(), path, metadata)

    def load(self, path: str, strict: bool = True):
        """Loads a safetensors file (written by :meth:`save`, ``cnnrs.save`` or
        ``safetensors.torch.save_file`` on the PyTorch twin) into this module.

        Args:
            path: the file.
            strict: require exactly this module's keys.

        Returns:
            ``(missing_keys, unexpected_keys)``, as :meth:`load_state_dict`.

        Raises:
            ValueError: the file is truncated, corrupt or not safetensors, or
                its keys/shapes do not match (listed by name); the module is
                unchanged then. Nothing in the file is executed (no pickle).
            OSError: the file cannot be read.

        Example:
            >>> model = cnnrs.models.resnet18()
            >>> model.load("resnet18.safetensors")
        """
        from .. import io

        return self.load_state_dict(io.load(path), strict=strict)

    # --- repr -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        main = f"{type(self).__name__}({self.extra_repr()}"
        if lines:
            main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


class Sequential(Module):
    """Runs its modules in order; indexable, iterable, len-able.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    """

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is {type(m).__name__}, "
                                    "not a Module")
                self.add_module(str(i), m)

    def forward(self, x):
        mods = [m for m in self._modules.values() if m is not None]
        i = 0
        while i < len(mods):
            m = mods[i]
            # A convolution followed by a ReLU runs as one fused kernel.
            if (getattr(m, "supports_fused_relu", False) and i + 1 < len(mods)
                    and getattr(mods[i + 1], "is_relu", False)):
                x = m(x, relu=True)
                i += 2
            else:
                x = m(x)
                i += 1
        return x

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered so their parameters are found."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or []:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, idx: int) -> Module:
        return list(self._modules.values())[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

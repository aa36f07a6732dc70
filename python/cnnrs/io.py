"""Saving and loading state dicts in the safetensors format (no pickle).

The format: an 8-byte little-endian header length, a JSON header mapping each
name to ``{"dtype", "shape", "data_offsets"}``, then the raw little-endian
bytes. Files written here load with ``safetensors.torch.load_file`` and vice
versa. Writes are atomic: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ._tensor import Tensor, _to_f32_array

__all__ = ["save", "load", "load_metadata"]

_DTYPES = {
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024


def save(state_dict: Mapping[str, Any], path: str,
         metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes ``name -> Tensor/array`` to ``path`` in safetensors format
    (also ``cnnrs.save``; ``Module.save`` writes a module's state_dict).

    Float tensors are stored as F32; integer numpy arrays keep their type
    (I64, ...). The data are laid out in the dict's order, contiguous, after
    a header padded to 8 bytes, which ``safetensors.torch.load_file`` reads.
    The write is atomic (temporary file in the same folder, fsync, rename):
    a crash never leaves a half file, and a replaced file keeps its mode.

    Args:
        state_dict: ``str`` keys to Tensors or numeric arrays.
        path: destination file.
        metadata: optional ``str -> str`` pairs stored as ``"__metadata__"``.

    Raises:
        TypeError: for non-string keys or non-numeric values.
        OSError: the folder is not writable.

    Example:
        >>> cnnrs.save(model.state_dict(), "model.safetensors")
    """
    header: Dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save: keys must be str, got {type(name).__name__}")
        arr = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if arr.dtype.kind in "iub":
            tag = {np.dtype(v).newbyteorder("<"): k for k, v in _DTYPES.items()}.get(
                arr.dtype.newbyteorder("<"))
            if tag is None:
                arr, tag = arr.astype("<i8"), "I64"
        else:
            arr, tag = _to_f32_array(arr, "save"), "F32"
        data = np.ascontiguousarray(arr, dtype=_DTYPES[tag]).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)  # align the data to 8 bytes, as the reference writer
    _atomic_write(path, [len(hbytes).to_bytes(8, "little"), hbytes, *blobs])


def _new_file_mode(path: str) -> int:
    """The mode a plain ``open(path, "w")`` would give: the old file's mode
    when replacing one, else 0o666 less the umask (mkstemp's is 0o600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:  # Linux: read the umask without changing it (os.umask is process-wide)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: str, chunks) -> None:
    """Writes ``chunks`` (bytes) to ``path`` via a temporary file in the same
    folder, fsync and rename: readers see the old file or the new one, never
    a half-written one, and a failure leaves no temporary file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cnnrs-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), _new_file_mode(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _first_offset(info: Any) -> int:
    """Sort key: an entry's start offset, 0 when the entry is malformed (it
    is then reported by the checks that follow)."""
    try:
        v = info["data_offsets"][0]
        return v if isinstance(v, int) else 0
    except (KeyError, IndexError, TypeError):
        return 0


def load_metadata(path: str) -> Dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file (``{}`` if none),
    read from its header only.

    Raises:
        ValueError: naming the file when it is not safetensors or its
            header is corrupt.

    Example:
        >>> cnnrs.io.load_metadata("unet-nuclei.safetensors")["model"]
        'unet'
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"load_metadata: {path} is not a safetensors file")
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER:
            raise ValueError(f"load_metadata: {path} is not a safetensors file (header of "
                             f"{n} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load_metadata: {path} has a corrupt safetensors header: {e}") from e
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError(f"load_metadata: {path} has a corrupt __metadata__ entry")
    return {str(k): str(v) for k, v in meta.items()}


def load(path: str, as_numpy: bool = False) -> "OrderedDict[str, Any]":
    """Reads a safetensors file into an ordered ``name -> Tensor`` dict (also
    ``cnnrs.load``; ``Module.load`` loads one into a module).

    Float data (F32, F16, BF16, F64) become float32 :class:`cnnrs.Tensor`
    (or numpy arrays with ``as_numpy=True``); integer and bool data stay
    numpy arrays of their type (``num_batches_tracked`` is int64). Files from
    ``safetensors.torch.save_file`` load as they are.

    Args:
        path: the file.
        as_numpy: return float data as numpy arrays instead of Tensors.

    Raises:
        ValueError: naming the file and the reason when it is truncated,
            corrupt or not safetensors (a pickle or ``torch.save`` zip is
            refused, never unpickled). Nothing in the file is ever executed.
        OSError: the file cannot be read.

    Example:
        >>> sd = cnnrs.load("model.safetensors")
        >>> model.load_state_dict(sd)
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"load: {path} is not a safetensors file (only {len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise ValueError(f"load: {path} is not a safetensors file or is truncated "
                         f"(header of {n} bytes, file of {len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"load: {path} has a corrupt safetensors header: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"load: {path} has a corrupt safetensors header (not an object)")
    body = memoryview(raw)[8 + n:]
    out: "OrderedDict[str, Any]" = OrderedDict()
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: _first_offset(kv[1]))
    for name, info in entries:
        try:
            tag = info["dtype"]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"load: {path}: entry {name!r} is malformed ({e!r})") from None
        if not isinstance(tag, str) or (tag not in _DTYPES and tag != "BF16"):
            raise ValueError(f"load: {path}: entry {name!r} has unsupported dtype {tag!r} "
                             f"(supported: {', '.join(sorted([*_DTYPES, 'BF16']))})")
        dtype = np.dtype("<u2") if tag == "BF16" else _DTYPES[tag]
        count = math.prod(shape)  # Python ints: no overflow on absurd shapes
        if any(d < 0 or d > 2**62 for d in shape) or not (0 <= begin <= end <= len(body)) \
                or end - begin != count * dtype.itemsize:
            raise ValueError(f"load: {path}: entry {name!r} (shape {shape}, bytes {begin}..{end}) "
                             f"does not fit the {len(body)}-byte data section")
        arr = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        if tag == "BF16":  # bfloat16 is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
            out[name] = arr if as_numpy else Tensor(arr)
        else:
            out[name] = arr.copy()
    return out

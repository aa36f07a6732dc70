"""Saving and loading state dicts in the safetensors format (no pickle).

The format: an 8-byte little-endian header length, a JSON header mapping each
name to ``{"dtype", "shape", "data_offsets"}``, then the raw little-endian
bytes. Files written here load with ``safetensors.torch.load_file`` and vice
versa. Writes are atomic: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import json
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
    """Writes ``name -> Tensor/array`` to ``path`` in safetensors format.

    Float tensors are stored as F32; integer numpy arrays keep their type
    (I64, ...). The write is atomic: a crash never leaves a half file.

    Raises:
        TypeError: for non-string keys or non-numeric values.
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
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cnnrs-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(hbytes).to_bytes(8, "little"))
            f.write(hbytes)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    """Reads a safetensors file into an ordered ``name -> Tensor`` dict.

    Float data become float32 :class:`cnnrs.Tensor` (or numpy arrays with
    ``as_numpy=True``); integer data stay int64/... numpy arrays.

    Raises:
        ValueError: naming the file and the reason when it is truncated,
            corrupt or not safetensors. Nothing in the file is ever executed.
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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load: {path} has a corrupt safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise ValueError(f"load: {path} has a corrupt safetensors header (not an object)")
    body = memoryview(raw)[8 + n:]
    out: "OrderedDict[str, Any]" = OrderedDict()
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: kv[1].get("data_offsets", [0])[0] if isinstance(kv[1], dict) else 0)
    for name, info in entries:
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"load: {path}: entry {name!r} is malformed ({e!r})") from None
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"load: {path}: entry {name!r} has unsupported dtype {info['dtype']}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if any(d < 0 for d in shape) or not (0 <= begin <= end <= len(body)) \
                or end - begin != count * dtype.itemsize:
            raise ValueError(f"load: {path}: entry {name!r} (shape {shape}, bytes {begin}..{end}) "
                             f"does not fit the {len(body)}-byte data section")
        arr = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
            out[name] = arr if as_numpy else Tensor(arr)
        else:
            out[name] = arr
    return out

"""safetensors save/load: round trip, format details, corrupt files."""

import json
import os

import numpy as np
import pytest

import cnnrs
from cnnrs import io


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    sd = {"a.weight": cnnrs.tensor(rng.standard_normal((3, 4))),
          "b": rng.standard_normal(5).astype(np.float32),
          "steps": np.array([7], dtype=np.int64)}
    path = str(tmp_path / "w.safetensors")
    io.save(sd, path, metadata={"model": "x"})
    back = io.load(path)
    assert list(back) == ["a.weight", "b", "steps"]
    assert np.array_equal(back["a.weight"].numpy(), sd["a.weight"].numpy())
    assert np.array_equal(back["b"].numpy(), sd["b"])
    assert back["steps"].dtype == np.int64 and back["steps"].tolist() == [7]


def test_file_layout_is_safetensors(tmp_path):
    path = str(tmp_path / "w.safetensors")
    io.save({"x": np.array([1.0, 2.0], dtype=np.float32)}, path)
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert header["x"] == {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    assert (8 + n) % 8 == 0
    assert np.frombuffer(raw[8 + n:], dtype="<f4").tolist() == [1.0, 2.0]


def test_save_is_atomic_on_failure(tmp_path):
    path = str(tmp_path / "w.safetensors")
    io.save({"x": np.ones(2, dtype=np.float32)}, path)
    with pytest.raises(TypeError):
        io.save({"x": np.ones(2, dtype=np.float32), 3: np.ones(1)}, path)
    assert io.load(path)["x"].numpy().tolist() == [1.0, 1.0]
    assert [f for f in os.listdir(tmp_path)] == ["w.safetensors"]


@pytest.mark.parametrize("payload,match", [
    (b"abc", "only 3 bytes"),
    ((10 ** 12).to_bytes(8, "little") + b"{}", "truncated"),
    ((4).to_bytes(8, "little") + b"{{{{", "corrupt safetensors header"),
    ((2).to_bytes(8, "little") + b"[]", "not an object"),
])
def test_corrupt_files_raise_value_error(tmp_path, payload, match):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        io.load(str(p))


def test_truncated_data_and_bad_entries(tmp_path):
    path = str(tmp_path / "w.safetensors")
    io.save({"x": np.ones((4, 4), dtype=np.float32)}, path)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:-10])
    with pytest.raises(ValueError, match="does not fit"):
        io.load(path)
    header = json.dumps({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}).encode()
    open(path, "wb").write(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(ValueError, match="malformed|unsupported dtype"):
        io.load(path)

"""Weights interchange with PyTorch through safetensors, without torch.

The PyTorch side is reproduced by hand: the torchvision twins' state_dict keys
and shapes are listed here from torchvision's module structure (not from
cnnrs), and files are written the way ``safetensors.torch.save_file`` writes
them (the format spec: an 8-byte little-endian header length; a JSON header
with an optional ``"__metadata__"`` first, then the tensors sorted by
descending dtype and then by name, each ``{"dtype", "shape",
"data_offsets"}``; the header padded with spaces to a multiple of 8; the raw
little-endian data, contiguous). When the ``safetensors`` package is
installed (it is in the ``test`` extra; it needs no torch), its reader and
writer, the same Rust code ``safetensors.torch`` calls, cross-check both
directions byte for byte.
"""

import functools
import json
import os
import struct

import numpy as np
import pytest

import cnnrs
from cnnrs import models

DTYPE_TAGS = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64", np.dtype("<f2"): "F16",
              np.dtype("<f8"): "F64"}
# safetensors' dtype order (its Rust enum); the writer sorts by it, descending
DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
               "I64", "U64"]


def write_like_safetensors_torch(path, tensors, metadata=None, dtype_tags=None):
    """An independent writer of the reference layout (see the module doc)."""
    tags = {k: (dtype_tags or {}).get(k) or DTYPE_TAGS[np.asarray(v).dtype]
            for k, v in tensors.items()}
    order = sorted(tensors, key=lambda k: (-DTYPE_ORDER.index(tags[k]), k))
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for k in order:
        data = np.ascontiguousarray(tensors[k]).tobytes()
        header[k] = {"dtype": tags[k], "shape": list(np.shape(tensors[k])),
                     "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_strictly(path):
    """An independent reader that also checks what safetensors' own reader
    requires: padding, contiguous offsets covering the whole data section."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"])
    pos, out = 0, {}
    rev = {v: k for k, v in DTYPE_TAGS.items()}
    for k, info in entries:
        begin, end = info["data_offsets"]
        assert begin == pos, f"{k}: gap or overlap at {begin} (expected {pos})"
        arr = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=rev[info["dtype"]])
        out[k] = (info["dtype"], arr.reshape(info["shape"]))
        pos = end
    assert 8 + n + pos == len(raw), "trailing bytes after the data"
    return out, meta


# --- the twins' keys, from torchvision's structure ----------------------------------

def torchvision_resnet18_entries(num_classes=1000):
    out = []

    def conv(name, cout, cin, k):
        out.append((f"{name}.weight", (cout, cin, k, k), "F32"))

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            out.append((f"{name}.{p}", (c,), "F32"))
        out.append((f"{name}.num_batches_tracked", (), "I64"))

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            pre = f"layer{i}.{b}"
            conv(f"{pre}.conv1", planes, inplanes, 3)
            bn(f"{pre}.bn1", planes)
            conv(f"{pre}.conv2", planes, planes, 3)
            bn(f"{pre}.bn2", planes)
            if b == 0 and inplanes != planes:
                conv(f"{pre}.downsample.0", planes, inplanes, 1)
                bn(f"{pre}.downsample.1", planes)
            inplanes = planes
    out += [("fc.weight", (num_classes, 512), "F32"), ("fc.bias", (num_classes,), "F32")]
    return out


def lenet5_twin_entries():
    # the PyTorch twin in cnnrs.models.lenet's docstring
    out = []
    for name, shape in [("conv1", (6, 1, 5, 5)), ("conv2", (16, 6, 5, 5)), ("fc1", (120, 400)),
                        ("fc2", (84, 120)), ("fc3", (10, 84))]:
        out += [(f"{name}.weight", shape, "F32"), (f"{name}.bias", (shape[0],), "F32")]
    return out


def torchvision_alexnet_entries(num_classes=1000):
    out = []
    for idx, shape in [(0, (64, 3, 11, 11)), (3, (192, 64, 5, 5)), (6, (384, 192, 3, 3)),
                       (8, (256, 384, 3, 3)), (10, (256, 256, 3, 3))]:
        out += [(f"features.{idx}.weight", shape, "F32"),
                (f"features.{idx}.bias", shape[:1], "F32")]
    for idx, shape in [(1, (4096, 9216)), (4, (4096, 4096)), (6, (num_classes, 4096))]:
        out += [(f"classifier.{idx}.weight", shape, "F32"),
                (f"classifier.{idx}.bias", shape[:1], "F32")]
    return out


def unet_twin_entries(in_channels=1, num_classes=2, base_width=64, depth=4, up="transpose",
                      batch_norm=False):
    """The keys of the PyTorch twin in cnnrs.models.unet's docstring."""
    w = [base_width * 2**i for i in range(depth + 1)]
    out = []

    def conv(name, cout, cin, k, bias=True):
        out.append((f"{name}.weight", (cout, cin, k, k), "F32"))
        if bias:
            out.append((f"{name}.bias", (cout,), "F32"))

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            out.append((f"{name}.{p}", (c,), "F32"))
        out.append((f"{name}.num_batches_tracked", (), "I64"))

    def double_conv(name, cin, cout):
        if batch_norm:  # Conv, BN, ReLU, Conv, BN, ReLU
            conv(f"{name}.0", cout, cin, 3, bias=False)
            bn(f"{name}.1", cout)
            conv(f"{name}.3", cout, cout, 3, bias=False)
            bn(f"{name}.4", cout)
        else:  # Conv, ReLU, Conv, ReLU
            conv(f"{name}.0", cout, cin, 3)
            conv(f"{name}.2", cout, cout, 3)

    for i in range(depth):
        double_conv(f"encoder.{i}", in_channels if i == 0 else w[i - 1], w[i])
    double_conv("bottleneck", w[depth - 1], w[depth])
    for j, i in enumerate(reversed(range(depth))):
        if up == "transpose":  # ConvTranspose2d weight: (C_in, C_out, k, k)
            out += [(f"upsample.{j}.weight", (w[i + 1], w[i], 2, 2), "F32"),
                    (f"upsample.{j}.bias", (w[i],), "F32")]
        else:
            conv(f"upsample.{j}.1", w[i], w[i + 1], 1)
    for j, i in enumerate(reversed(range(depth))):
        double_conv(f"decoder.{j}", 2 * w[i], w[i])
    conv("head", num_classes, w[0], 1)
    return out


def random_arrays(entries, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, tag in entries:
        if tag == "I64":
            out[name] = np.array(rng.integers(0, 1000), dtype=np.int64).reshape(shape)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    return out


def set_by_attribute_path(model, arrays):
    """Sets weights by walking each dotted key through attributes, the way a
    hand port would: independent of load_state_dict."""
    for key, arr in arrays.items():
        *path, leaf = key.split(".")
        owner = functools.reduce(getattr, path, model)
        if leaf == "num_batches_tracked":
            owner._buffers[leaf] = arr.copy()
        else:
            getattr(owner, leaf)._v.set_value(np.ascontiguousarray(arr, dtype=np.float32))


def outputs(model, x):
    model.eval()
    with cnnrs.no_grad():
        return model(cnnrs.tensor(x)).numpy()


# --- key parity -----------------------------------------------------------------

@pytest.mark.parametrize("build,entries", [
    (lambda: models.resnet18(), torchvision_resnet18_entries()),
    (lambda: models.lenet5(), lenet5_twin_entries()),
    (lambda: models.alexnet(), torchvision_alexnet_entries()),
], ids=["resnet18", "lenet5", "alexnet"])
def test_state_dict_keys_and_shapes_equal_the_pytorch_twin(build, entries):
    sd = build().state_dict()
    assert list(sd) == [k for k, _, _ in entries]  # same order as torch's state_dict
    for name, shape, tag in entries:
        assert tuple(np.shape(sd[name])) == shape, name
        if tag == "I64":
            assert isinstance(sd[name], np.ndarray) and sd[name].dtype == np.int64


UNET_CONFIGS = [dict(), dict(batch_norm=True), dict(up="bilinear"),
                dict(base_width=8, depth=2, up="bilinear", batch_norm=True, in_channels=3,
                     num_classes=5)]


@pytest.mark.parametrize("kwargs", UNET_CONFIGS, ids=[str(k) for k in UNET_CONFIGS])
def test_unet_keys_and_shapes_equal_the_pytorch_twin(kwargs):
    if not hasattr(models, "unet"):
        pytest.skip("cnnrs.models.unet is not in this build")
    entries = unet_twin_entries(**kwargs)
    sd = models.unet(**kwargs).state_dict()
    assert list(sd) == [k for k, _, _ in entries]
    for name, shape, _ in entries:
        assert tuple(np.shape(sd[name])) == shape, name


def test_unet_twin_param_counts():
    # the counts the U-Net docstring states for the PyTorch twin
    def count(**kw):
        return sum(int(np.prod(s)) for k, s, t in unet_twin_entries(**kw)
                   if t == "F32" and "running" not in k)

    assert count() == 31_030_658
    assert count(base_width=16) == 1_940_834


def test_pytorch_unet_file_loads_and_gives_the_same_outputs(tmp_path):
    if not hasattr(models, "unet"):
        pytest.skip("cnnrs.models.unet is not in this build")
    kw = dict(base_width=8, depth=2, up="bilinear", batch_norm=True)
    arrays = random_arrays(unet_twin_entries(**kw), seed=13)
    path = str(tmp_path / "unet.safetensors")
    write_like_safetensors_torch(path, arrays, {"format": "pt"})
    loaded = models.unet(**kw)
    loaded.load(path)
    by_hand = models.unet(**kw)
    set_by_attribute_path(by_hand, arrays)
    x = np.random.default_rng(14).standard_normal((2, 1, 30, 34)).astype(np.float32)
    y = outputs(loaded, x)
    np.testing.assert_array_equal(y, outputs(by_hand, x))
    assert y.shape == (2, 2, 30, 34) and y.std() > 0


def test_resnet18_twin_param_count():
    n = sum(int(np.prod(s)) for k, s, t in torchvision_resnet18_entries()
            if t == "F32" and "running" not in k)
    assert n == 11_689_512


# --- PyTorch -> cnnrs -------------------------------------------------------------

@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_pytorch_resnet18_file_loads_and_gives_the_same_outputs(tmp_path, metadata):
    arrays = random_arrays(torchvision_resnet18_entries(), seed=1)
    path = str(tmp_path / "resnet18.safetensors")
    write_like_safetensors_torch(path, arrays, metadata)

    loaded = models.resnet18()
    missing, unexpected = loaded.load(path, strict=True)
    assert missing == [] and unexpected == []
    by_hand = models.resnet18()
    set_by_attribute_path(by_hand, arrays)

    sd = loaded.state_dict()
    for k, v in arrays.items():
        np.testing.assert_array_equal(np.asarray(sd[k]), v, err_msg=k)
        assert np.asarray(sd[k]).dtype == v.dtype
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    y = outputs(loaded, x)
    np.testing.assert_array_equal(y, outputs(by_hand, x))
    assert np.isfinite(y).all() and y.std() > 0


def test_pytorch_lenet5_file_loads_through_every_entry_point(tmp_path):
    arrays = random_arrays(lenet5_twin_entries(), seed=3)
    path = str(tmp_path / "lenet.safetensors")
    write_like_safetensors_torch(path, arrays)
    by_hand = models.lenet5()
    set_by_attribute_path(by_hand, arrays)
    x = np.random.default_rng(4).standard_normal((3, 1, 32, 32)).astype(np.float32)
    want = outputs(by_hand, x)

    a = models.lenet5()
    a.load(path)
    b = models.lenet5()
    b.load_state_dict(cnnrs.load(path), strict=True)
    c = models.lenet5()
    c.load_state_dict(cnnrs.io.load(path, as_numpy=True))
    for m in (a, b, c):
        np.testing.assert_array_equal(outputs(m, x), want)


def test_half_and_double_precision_files_load_as_float32(tmp_path):
    arrays = random_arrays(lenet5_twin_entries(), seed=5)
    half = {k: v.astype(np.float16) for k, v in arrays.items()}
    double = {k: v.astype(np.float64) for k, v in arrays.items()}
    bf16_bits = {k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in arrays.items()}
    for name, tensors, tags in [("f16", half, None), ("f64", double, None),
                                ("bf16", bf16_bits, {k: "BF16" for k in arrays})]:
        path = str(tmp_path / f"{name}.safetensors")
        write_like_safetensors_torch(path, tensors, dtype_tags=tags)
        m = models.lenet5()
        m.load(path)
        sd = m.state_dict()
        for k in arrays:
            if name == "bf16":  # bfloat16 keeps the top 16 bits of the float32
                expect = (bf16_bits[k].astype(np.uint32) << 16).view(np.float32)
            else:
                expect = tensors[k].astype(np.float32)
            np.testing.assert_array_equal(sd[k].numpy(), expect, err_msg=f"{name} {k}")


# --- cnnrs -> PyTorch -------------------------------------------------------------

def test_cnnrs_file_has_the_twin_keys_dtypes_and_a_valid_layout(tmp_path):
    model = models.resnet18()
    model.train()
    with cnnrs.no_grad():
        model(cnnrs.randn(2, 3, 32, 32))  # moves running stats and num_batches_tracked
    path = str(tmp_path / "out.safetensors")
    model.save(path, metadata={"format": "pt"})
    tensors, meta = read_strictly(path)
    assert meta == {"format": "pt"}
    entries = torchvision_resnet18_entries()
    assert set(tensors) == {k for k, _, _ in entries}
    sd = model.state_dict()
    for name, shape, tag in entries:
        got_tag, arr = tensors[name]
        assert (got_tag, arr.shape) == (tag, shape), name
        np.testing.assert_array_equal(arr, np.asarray(sd[name]), err_msg=name)
    assert tensors["bn1.num_batches_tracked"][1] == 1


def test_round_trip_is_exact_and_aliases_work(tmp_path):
    model = models.resnet20()
    path = str(tmp_path / "r20.safetensors")
    cnnrs.save(model.state_dict(), path)
    back = cnnrs.load(path)
    sd = model.state_dict()
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(sd[k]), err_msg=k)
    fresh = models.resnet20()
    fresh.load(path)
    x = np.random.default_rng(6).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x))


def test_save_keeps_a_normal_file_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    models.lenet5().save(str(path))
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask
    os.chmod(path, 0o640)
    models.lenet5().save(str(path))  # replacing a file keeps its mode
    assert (path.stat().st_mode & 0o777) == 0o640


# --- cross-check with the safetensors package ------------------------------------------

def test_safetensors_package_reads_cnnrs_files(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    model = models.resnet18(num_classes=10)
    path = str(tmp_path / "cnnrs.safetensors")
    model.save(path, metadata={"format": "pt"})
    loaded = st.load_file(path)
    sd = model.state_dict()
    assert set(loaded) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(loaded[k], np.asarray(v), err_msg=k)
        want = np.int64 if k.endswith("num_batches_tracked") else np.float32
        assert loaded[k].dtype == want
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "pt"}


def test_safetensors_package_files_load_into_cnnrs(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    arrays = random_arrays(torchvision_resnet18_entries(num_classes=10), seed=7)
    ours, theirs = str(tmp_path / "ours.safetensors"), str(tmp_path / "theirs.safetensors")
    st.save_file(arrays, theirs, metadata={"format": "pt"})
    write_like_safetensors_torch(ours, arrays, {"format": "pt"})
    # the test's writer is the reference layout, byte for byte
    assert open(ours, "rb").read() == open(theirs, "rb").read()
    model = models.resnet18(num_classes=10)
    model.load(theirs)
    by_hand = models.resnet18(num_classes=10)
    set_by_attribute_path(by_hand, arrays)
    x = np.random.default_rng(8).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(outputs(model, x), outputs(by_hand, x))


# --- mismatched, truncated and corrupt files ----------------------------------------------

def _lenet_file(tmp_path):
    path = str(tmp_path / "lenet.safetensors")
    write_like_safetensors_torch(path, random_arrays(lenet5_twin_entries(), seed=9))
    return path


def _state(model):
    return {k: np.asarray(v).copy() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before):
    after = _state(model)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_key_and_shape_mismatches_are_reported_by_name(tmp_path):
    arrays = random_arrays(lenet5_twin_entries(), seed=10)
    model = models.lenet5()
    before = _state(model)
    # DataParallel-style prefix: every key is unexpected, every own key missing
    path = str(tmp_path / "prefixed.safetensors")
    write_like_safetensors_torch(path, {f"module.{k}": v for k, v in arrays.items()})
    with pytest.raises(ValueError, match=r"Missing key\(s\): 'conv1.weight'.*\n.*"
                                         r"Unexpected key\(s\): 'module.conv1.bias'"):
        model.load(path)
    # a twin with 100 classes
    path = str(tmp_path / "c100.safetensors")
    bad = dict(arrays, **{"fc3.weight": np.zeros((100, 84), np.float32),
                          "fc3.bias": np.zeros(100, np.float32)})
    write_like_safetensors_torch(path, bad)
    with pytest.raises(ValueError, match=r"Size mismatch: fc3.weight: copying a param with "
                                         r"shape \(100, 84\).*is \(10, 84\)"):
        model.load(path)
    _assert_unchanged(model, before)
    # non-strict: the extra key is reported, the rest loads
    path = str(tmp_path / "extra.safetensors")
    write_like_safetensors_torch(path, dict(arrays, extra=np.ones(2, np.float32)))
    assert model.load(path, strict=False) == ([], ["extra"])
    np.testing.assert_array_equal(model.fc3.bias.numpy(), arrays["fc3.bias"])


def _header_file(tmp_path, header, data=b""):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return str(path)


W = {"dtype": "F32", "shape": [6, 1, 5, 5], "data_offsets": [0, 600]}


@pytest.mark.parametrize("header,data,match", [
    (b"", b"", "corrupt safetensors header"),
    (b"not json", b"", "corrupt safetensors header"),
    (b"\xff\xfe{}", b"", "corrupt safetensors header"),
    (b"[" * 100_000 + b"]" * 100_000, b"", "corrupt safetensors header"),
    ([1, 2], b"", "not an object"),
    ({"conv1.weight": 5}, b"", "malformed"),
    ({"conv1.weight": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "malformed"),
    ({"conv1.weight": dict(W, dtype="Q9")}, b"\0" * 600, "unsupported dtype 'Q9'"),
    ({"conv1.weight": dict(W, dtype=["F32"])}, b"\0" * 600, "unsupported dtype"),
    ({"conv1.weight": dict(W, shape=[-6, -1, 5, 5])}, b"\0" * 600, "does not fit"),
    ({"conv1.weight": dict(W, shape=[2**40, 2**40, 2**40])}, b"\0" * 600, "does not fit"),
    ({"conv1.weight": dict(W, shape=[0, 2**70])}, b"", "does not fit"),
    ({"conv1.weight": dict(W, data_offsets=[600, 0])}, b"\0" * 600, "does not fit"),
    ({"conv1.weight": dict(W, data_offsets=[0, 6000])}, b"\0" * 600, "does not fit"),
    ({"conv1.weight": dict(W, data_offsets=["a", "b"])}, b"\0" * 600, "malformed"),
    ({"conv1.weight": dict(W, data_offsets=[0])}, b"\0" * 600, "malformed"),
    ({"conv1.weight": dict(W, data_offsets={"a": 1})}, b"\0" * 600, "malformed"),
    (b'{"conv1.weight": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}',
     b"\0" * 4, "malformed"),
    (b'{"conv1.weight": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}',
     b"\0" * 4, "malformed"),
])
def test_crafted_headers_raise_value_error(tmp_path, header, data, match):
    model = models.lenet5()
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        model.load(_header_file(tmp_path, header, data))
    _assert_unchanged(model, before)


@pytest.mark.parametrize("payload,match", [
    (b"", "only 0 bytes"),
    (b"PK\x03\x04" + bytes(60), "not a safetensors file"),      # torch.save's zip
    (b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01" + bytes(40), "not a safetensors file"),  # pickle
    (struct.pack("<Q", 200 * 2**20) + b"{}", "not a safetensors file"),
])
def test_other_formats_are_refused_without_unpickling(tmp_path, payload, match):
    path = tmp_path / "model.pt"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        models.lenet5().load(str(path))


def test_truncated_pytorch_files_raise_value_error(tmp_path):
    path = _lenet_file(tmp_path)
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    cut = tmp_path / "cut.safetensors"
    rng = np.random.default_rng(11)
    # every cut inside the length prefix and the header, and a sample of the data
    points = list(range(0, 8 + n + 1)) + sorted(rng.integers(8 + n + 1, len(raw), 200))
    model = models.lenet5()
    before = _state(model)
    for k in points:
        cut.write_bytes(raw[:k])
        with pytest.raises(ValueError):
            model.load(str(cut))
    _assert_unchanged(model, before)


def test_bit_flips_in_the_header_never_crash(tmp_path):
    # A flipped bit leaves the file loadable (a key or number that still
    # fits), or raises ValueError; nothing else, and a failed load changes
    # nothing.
    path = _lenet_file(tmp_path)
    raw = bytearray(open(path, "rb").read())
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    rng = np.random.default_rng(12)
    flipped = tmp_path / "flip.safetensors"
    outcomes = {"ok": 0, "ValueError": 0}
    for _ in range(400):
        bad = bytearray(raw)
        pos = int(rng.integers(0, 8 + n))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        flipped.write_bytes(bytes(bad))
        model = models.lenet5()
        before = _state(model)
        try:
            model.load(str(flipped))
            outcomes["ok"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
            _assert_unchanged(model, before)
    assert outcomes["ValueError"] > 300, outcomes

"""Datasets and the DataLoader."""

import gzip
import struct

import numpy as np
import pytest

import cnnrs
from cnnrs.data import MNIST, DataLoader, FashionMNIST, TensorDataset, load_digits, read_idx
from conftest import shared_data


def test_load_digits_is_the_uci_set():
    x, y = load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 16
    assert sorted(np.unique(y).tolist()) == list(range(10))
    assert np.bincount(y).min() >= 170  # roughly balanced, as the UCI set


def write_idx(path, arr, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + struct.pack(">" + "I" * arr.ndim,
                                                                          *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reader_on_written_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    ext = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{ext}", imgs, gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz)
    ds = MNIST(str(tmp_path), train=False)
    assert len(ds) == 7 and np.array_equal(ds.data, imgs)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and y == labels[3]
    xb, yb = ds[np.array([0, 2])]
    assert xb.shape == (2, 1, 28, 28) and yb.tolist() == labels[[0, 2]].tolist()
    assert ds.images().max() <= 1.0


def test_idx_errors(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(str(p))
    p.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 100) + b"\x00" * 10)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(str(p))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        FashionMNIST(str(tmp_path))


def test_fashion_mnist_shared_data():
    root = shared_data("fashion-mnist")
    ds = FashionMNIST(root, train=False)
    assert len(ds) == 10000 and ds.data.shape == (10000, 28, 28)
    assert np.bincount(ds.targets).tolist() == [1000] * 10


def test_dataloader_batches_shuffle_seed_drop_last():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    ds = TensorDataset(x, y)
    batches = list(DataLoader(ds, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert isinstance(batches[0][0], cnnrs.Tensor) and batches[0][1].dtype == np.int64
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    a = [b[1].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True, seed=5)]
    b = [b[1].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True, seed=5)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and sum(a, []) != list(range(10))
    # Consecutive epochs of one loader differ.
    loader = DataLoader(ds, batch_size=10, shuffle=True, seed=1)
    e1, e2 = (next(iter(loader))[1].tolist() for _ in range(2))
    assert e1 != e2
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="differ in length"):
        TensorDataset(x, y[:3])


def test_dataloader_on_per_sample_dataset():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            if not isinstance(i, int):
                raise TypeError("ints only")
            return np.full((2,), i, dtype=np.float32), i * i

    xb, yb = next(iter(DataLoader(Squares(), batch_size=5)))
    assert xb.shape == (5, 2) and yb.tolist() == [0, 1, 4, 9, 16]

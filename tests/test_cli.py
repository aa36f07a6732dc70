"""The cnnrs command: train/eval on real data, JSON last line, errors."""

import json
import subprocess
import sys

import pytest

from cnnrs import cli
from conftest import shared_data


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return code, out


def test_train_lenet_on_digits_reaches_97_percent_and_eval_agrees(capsys, tmp_path):
    weights = str(tmp_path / "lenet.safetensors")
    code, out = run(capsys, "train", "lenet", "--out", weights, "--threads", "2")
    assert code == 0
    assert out[0].startswith("digits: 1438 train / 359 held-out test images")
    result = json.loads(out[-1])
    assert result["model"] == "lenet" and result["dataset"] == "digits"
    assert result["train_samples"] == 1438 and result["test_samples"] == 359
    assert result["accuracy"] >= 0.97, result
    assert sum(1 for line in out if line.startswith("epoch ")) == result["epochs"] == 20
    code, out = run(capsys, "eval", "lenet", "--weights", weights)
    assert code == 0
    assert json.loads(out[-1])["accuracy"] == result["accuracy"]


def test_train_lenet_fashion_mnist_two_epochs(capsys, tmp_path):
    root = shared_data("fashion-mnist")
    code, out = run(capsys, "train", "lenet", "--dataset", "fashion-mnist", "--data-dir", root,
                    "--epochs", "2", "--out", str(tmp_path / "f.safetensors"))
    assert code == 0
    result = json.loads(out[-1])
    assert result["test_samples"] == 10000 and result["train_samples"] == 60000
    assert result["accuracy"] >= 0.87, result


def test_errors_exit_2_with_a_message(capsys, tmp_path):
    assert cli.main(["train", "lenet", "--dataset", "cifar"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert cli.main(["train", "lenet", "--dataset", "fashion-mnist"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert cli.main(["train", "lenet", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    assert "never downloads" in capsys.readouterr().err
    assert cli.main(["train", "vgg"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cnnrs", "train", "lenet", "--epochs", "1",
                          "--out", str(tmp_path / "w.safetensors")],
                         capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["epochs"] == 1
    assert "epoch 1/1" in out.stderr  # the progress bar


@pytest.mark.parametrize("bad", [["train"], ["frobnicate", "lenet"]])
def test_usage_errors(bad):
    with pytest.raises(SystemExit) as e:
        cli.main(bad)
    assert e.value.code == 2


def test_resnet_training_with_augmentation_and_plot(capsys, tmp_path):
    png = tmp_path / "curves.png"
    code, out = run(capsys, "train", "resnet20", "--epochs", "1", "--batch-size", "128",
                    "--crop-padding", "2", "--flip", "--rotate", "5", "--scale", "0.9,1.1",
                    "--noise", "0.05", "--cutout", "4", "--shift", "1",
                    "--plot", str(png), "--out", str(tmp_path / "r.safetensors"))
    assert code == 0
    result = json.loads(out[-1])
    assert result["model"] == "resnet20" and result["epochs"] == 1
    assert "crop, flip, shift, affine, noise, cutout" in out[1]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" in data[-12:]


def test_png_writer_round_trip(tmp_path):
    import struct
    import zlib

    import numpy as np

    from cnnrs._plot import write_png

    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    write_png(str(p), img)
    raw = p.read_bytes()
    w, h = struct.unpack(">II", raw[16:24])
    assert (w, h) == (7, 5)
    idat_len = struct.unpack(">I", raw[33:37])[0]
    rows = zlib.decompress(raw[41:41 + idat_len])
    back = np.frombuffer(rows, np.uint8).reshape(5, 1 + 7 * 3)[:, 1:].reshape(5, 7, 3)
    assert np.array_equal(back, img)


@pytest.mark.slow
def test_resnet20_fashion_mnist_five_epochs_reaches_91_percent(capsys, tmp_path):
    """Issue 4's bar: `cnnrs train resnet20 --dataset fashion-mnist` (defaults:
    5 epochs, SGD 0.1 cosine, wd 5e-4, batch 128). About 11 minutes on 2 cores."""
    root = shared_data("fashion-mnist")
    code, out = run(capsys, "train", "resnet20", "--dataset", "fashion-mnist", "--data-dir", root,
                    "--out", str(tmp_path / "r20.safetensors"))
    assert code == 0
    result = json.loads(out[-1])
    assert result["epochs"] == 5 and result["accuracy"] >= 0.91, result

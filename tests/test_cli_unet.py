"""cnnrs train|eval|predict unet: synthetic default (tiny, fast), the nuclei
pair to the Dice bar, the panel PNG, and errors."""

import json
import struct

import numpy as np
import pytest

from cnnrs import cli, io
from cnnrs._plot import PANEL_BAND, PANEL_MARGIN
from cnnrs.data import synthetic_cells
from conftest import shared_data


def run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def write_tiff(path, a):
    """A minimal uncompressed one-strip grey TIFF (little-endian), written
    here independently of the reader under test."""
    a = np.ascontiguousarray(a, dtype="<u2")
    h, w = a.shape
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, h), (279, 4, 1, a.nbytes)]
    ifd_at = 8 + a.nbytes
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, typ, n) + (struct.pack("<HH", v, 0) if typ == 3
                                          else struct.pack("<I", v))
        for t, typ, n, v in tags) + struct.pack("<I", 0)
    with open(path, "wb") as f:
        f.write(b"II*\x00" + struct.pack("<I", ifd_at) + a.tobytes() + ifd)


def png_size(path):
    raw = open(path, "rb").read(24)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])  # (width, height)


def panel_size(n, h, w):
    s = max(1, 256 // max(h, w))
    return n * w * s + (n + 1) * PANEL_MARGIN, PANEL_BAND + h * s + PANEL_MARGIN


TINY = ("--epochs", "2", "--steps", "2", "--batch-size", "2", "--crop", "32", "--base-width",
        "4", "--depth", "2", "--synthetic-images", "4", "--threads", "2")


def test_train_predict_eval_on_tiny_synthetic_data(capsys, tmp_path):
    weights = str(tmp_path / "u.safetensors")
    curves = str(tmp_path / "curves.png")
    code, out, err = run(capsys, "train", "unet", *TINY, "--out", weights, "--plot", curves)
    assert code == 0, err
    assert png_size(curves) == (860, 340)
    assert out[0].startswith("synthetic cells: 4 train / 8 validation images of 32x32")
    assert [line.split()[1] for line in out if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert "val_dice" in out[2]
    assert "epoch 1/2 [" in err  # progress bar on stderr
    r = json.loads(out[-1])
    assert r["model"] == "unet" and r["dataset"] == "synthetic" and r["steps"] == 4
    assert 0.0 <= r["dice"] <= 1.0 and 0.0 <= r["iou"] <= r["dice"] + 1e-9
    assert r["parameters"] == sum(int(np.prod(v.shape)) for k, v in io.load(weights).items()
                                  if "running" not in k and "num_batches" not in k)
    cfg = json.loads(io.load_metadata(weights)["unet_config"])
    assert cfg["base_width"] == 4 and cfg["depth"] == 2 and cfg["batch_norm"] is True

    x, y = synthetic_cells(1, size=48, seed=99)
    img, mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    write_tiff(img, np.clip(x[0, 0] * 1000, 0, 65535))
    write_tiff(mask, y[0] * 3)  # labels > 0 are the foreground
    panel = str(tmp_path / "panel.png")
    code, out, err = run(capsys, "predict", "unet", "--weights", weights, "--input", img,
                         "--mask", mask, "--out", panel)
    assert code == 0, err
    p = json.loads(out[-1])
    assert p["size"] == [48, 48] and 0.0 <= p["dice"] <= 1.0 and p["out"] == panel
    assert png_size(panel) == panel_size(3, 48, 48)
    code, out, err = run(capsys, "predict", "unet", "--weights", weights, "--input", img,
                         "--out", panel)
    assert code == 0 and "dice" not in json.loads(out[-1])
    assert png_size(panel) == panel_size(2, 48, 48)

    code, out, err = run(capsys, "eval", "unet", "--weights", weights, "--crop", "32")
    assert code == 0, err
    assert json.loads(out[-1])["dice"] == r["dice"]


def test_valid_padding_predict_covers_the_image(capsys, tmp_path):
    weights = str(tmp_path / "v.safetensors")
    code, out, err = run(capsys, "train", "unet", "--epochs", "1", "--steps", "1",
                         "--batch-size", "1", "--crop", "44", "--base-width", "2", "--depth",
                         "2", "--padding", "valid", "--batch-norm", "--synthetic-images", "2",
                         "--out", weights)
    assert code == 0, err
    x, y = synthetic_cells(1, size=(30, 50), seed=1)
    img, panel = str(tmp_path / "img.tif"), str(tmp_path / "p.png")
    write_tiff(img, np.clip(x[0, 0] * 1000, 0, 65535))
    code, out, err = run(capsys, "predict", "unet", "--weights", weights, "--input", img,
                         "--out", panel)
    assert code == 0, err
    assert json.loads(out[-1])["size"] == [30, 50]
    assert png_size(panel) == panel_size(2, 30, 50)


def test_train_on_image_mask_folders(capsys, tmp_path):
    x, y = synthetic_cells(5, size=40, seed=2)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i in range(5):
        write_tiff(str(tmp_path / "images" / f"c{i}.tif"), np.clip(x[i, 0] * 1000, 0, 65535))
        write_tiff(str(tmp_path / "masks" / f"c{i}_mask.tif"), y[i] * (i + 1))
    code, out, err = run(capsys, "train", "unet", "--data-dir", str(tmp_path), "--epochs", "1",
                         "--steps", "2", "--batch-size", "2", "--crop", "32", "--base-width",
                         "4", "--depth", "2", "--weight-map", "--loss", "ce",
                         "--out", str(tmp_path / "f.safetensors"))
    assert code == 0, err
    assert out[0] == "folders: 4 train pairs, the last 1 (by name) held out for validation"
    assert "+ weight map" in out[1]
    r = json.loads(out[-1])
    assert r["dataset"] == "folders" and r["val_pixels"] == 40 * 40


def test_weight_map_on_the_nuclei_pair(capsys, tmp_path):
    root = shared_data("nuclei")
    code, out, err = run(capsys, "train", "unet", "--data-dir", root, "--weight-map", "--epochs",
                         "1", "--steps", "1", "--batch-size", "2", "--crop", "32",
                         "--base-width", "4", "--depth", "2", "--out",
                         str(tmp_path / "w.safetensors"))
    assert code == 0, err
    assert json.loads(out[-1])["steps"] == 1


def test_unet_cli_errors(capsys, tmp_path):
    code, _, err = run(capsys, "predict", "lenet", "--weights", "w", "--input", "i", "--out",
                       "o.png")
    assert code == 2 and "predict supports unet only" in err
    code, _, err = run(capsys, "predict", "unet", "--weights", str(tmp_path / "none"),
                       "--input", "i", "--out", "o.png")
    assert code == 2 and "cannot load" in err
    code, _, err = run(capsys, "train", "unet", "--data-dir", str(tmp_path))
    assert code == 2 and "expected img2d.tif + mask2d.tif" in err
    code, _, err = run(capsys, "train", "unet", "--crop", "8", "--synthetic-images", "2",
                       "--epochs", "1")
    assert code == 2 and "too small for depth 4" in err


def test_train_unet_on_nuclei_reaches_dice_085_on_the_held_out_quarter(capsys, tmp_path):
    """The done-means: defaults (base width 16, same padding, batch norm, Adam,
    4 epochs x 25 steps of 8 random 128x128 crops from the left three
    quarters, flips and rotations), validated on the right quarter."""
    root = shared_data("nuclei")
    weights = str(tmp_path / "n.safetensors")
    code, out, err = run(capsys, "train", "unet", "--data-dir", root, "--out", weights)
    assert code == 0, err
    assert out[0].startswith("nuclei: train on columns 0..383")
    r = json.loads(out[-1])
    assert r["dataset"] == "nuclei" and r["val_pixels"] == 512 * 128
    assert r["dice"] >= 0.85, r
    panel = str(tmp_path / "panel.png")
    code, out, err = run(capsys, "predict", "unet", "--weights", weights, "--input",
                         f"{root}/img2d.tif", "--mask", f"{root}/mask2d.tif", "--out", panel)
    assert code == 0, err
    assert json.loads(out[-1])["dice"] >= 0.85
    assert png_size(panel) == panel_size(3, 512, 512)


@pytest.mark.parametrize("cmd", ["train", "eval"])
def test_classification_paths_still_parse(cmd, capsys):
    # The shared parser still rejects unknown classification datasets.
    extra = ["--weights", "w"] if cmd == "eval" else []
    assert cli.main([cmd, "lenet", "--dataset", "cifar", *extra]) == 2
    assert "unknown dataset" in capsys.readouterr().err

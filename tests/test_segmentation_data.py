"""Segmentation data: joint crops/flips/rotations (image, mask and weight map
moved alike), seeding, image files (Pillow and the built-in TIFF reader), the
nuclei split, synthetic cells and the U-Net weight map."""

import sys

import numpy as np
import pytest

from cnnrs.data import (
    DataLoader,
    SegmentationDataset,
    load_nuclei,
    nuclei_split,
    read_image,
    synthetic_cells,
    unet_weight_map,
)
from cnnrs.data import segmentation as seg
from conftest import shared_data


def dihedral(a):
    """The 8 flips/rotations of a 2-D array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, np.fliplr(r)]
    return out


def find_window(src, crop):
    """(y, x, t) such that dihedral(src[y:y+h', x:x+w'])[t] == crop, or None."""
    h, w = crop.shape
    for wh, ww in {(h, w), (w, h)}:
        for y in range(src.shape[0] - wh + 1):
            for x in range(src.shape[1] - ww + 1):
                for t, d in enumerate(dihedral(src[y:y + wh, x:x + ww])):
                    if d.shape == crop.shape and np.array_equal(d, crop):
                        return y, x, t
    return None


@pytest.mark.parametrize("seed", range(4))
def test_joint_crops_move_image_mask_and_weights_alike(seed):
    rng = np.random.default_rng(seed)
    m, h, w = 3, int(rng.integers(8, 14)), int(rng.integers(8, 14))
    # Unique values per pixel, so a crop identifies its window and symmetry.
    ids = np.arange(m * h * w).reshape(m, h, w)
    images = np.stack([ids, -ids], axis=1).astype(np.float32)  # (m, 2, h, w)
    wmaps = [(ids[i] * 0.5).astype(np.float32) for i in range(m)]
    crop = (int(rng.integers(2, 7)), int(rng.integers(2, 7)))
    ds = SegmentationDataset(images, ids, crop_size=crop, flip=True, rot90=True,
                             samples_per_epoch=24, seed=seed, weight_maps=wmaps)
    x, y, wt = ds[np.arange(24)]
    assert x.shape == (24, 2) + crop and y.shape == (24,) + crop and wt.shape == (24,) + crop
    assert x.dtype == np.float32 and y.dtype == np.int64 and wt.dtype == np.float32
    seen = set()
    for i in range(24):
        src = i % m
        np.testing.assert_array_equal(x[i, 0], y[i])
        np.testing.assert_array_equal(x[i, 1], -y[i])
        np.testing.assert_array_equal(wt[i], y[i] * 0.5)
        found = find_window(ids[src], y[i])
        assert found is not None, f"sample {i} is not a transformed window of image {src}"
        seen.add(found[2])
    assert len(seen) > 3  # flips and rotations happen


def test_seeding_repeats_and_loader_batches():
    x, y = synthetic_cells(6, size=40, seed=3)

    def batches(seed):
        ds = SegmentationDataset(x, y, crop_size=24, flip=True, rot90=True,
                                 samples_per_epoch=12, seed=seed)
        return [(xb.numpy(), yb) for xb, yb in DataLoader(ds, batch_size=4)]

    a, b, c = batches(0), batches(0), batches(1)
    assert len(a) == 3 and a[0][0].shape == (4, 1, 24, 24) and a[0][1].shape == (4, 24, 24)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_no_augmentation_returns_whole_images_and_normalises():
    x, y = synthetic_cells(3, size=16, seed=0)
    ds = SegmentationDataset(x, y, mean=0.5, std=2.0)
    xi, yi = ds[1]
    np.testing.assert_allclose(xi, (x[1] - 0.5) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(yi, y[1])
    labels = np.zeros((1, 16, 16), np.int64)
    labels[0, 2:5, 2:5] = 7
    ds = SegmentationDataset(x[:1], labels, binary=True)
    assert set(np.unique(ds[0][1])) == {0, 1}


def test_dataset_errors():
    x, y = synthetic_cells(2, size=16, seed=0)
    with pytest.raises(ValueError, match="SegmentationDataset: 2 images but 1 masks"):
        SegmentationDataset(x, y[:1])
    with pytest.raises(ValueError, match=r"SegmentationDataset: image 0 is \(16, 16\) but its "
                                         r"mask is \(16, 15\)"):
        SegmentationDataset(x, y[:, :, :15])
    with pytest.raises(ValueError, match=r"crop_size \(20, 20\) .*does not fit image 0"):
        SegmentationDataset(x, y, crop_size=20)
    with pytest.raises(ValueError, match=r"crop_size \(8, 20\) \(rotated\) does not fit"):
        SegmentationDataset(x, y, crop_size=(8, 20), rot90=True)
    with pytest.raises(ValueError, match="rot90 without crop_size needs square images"):
        SegmentationDataset(x[:, :, :, :10], y[:, :, :10], rot90=True)
    with pytest.raises(TypeError, match="must hold integer labels"):
        SegmentationDataset(x, y + 0.5)
    with pytest.raises(IndexError, match="index out of range for 2 samples"):
        SegmentationDataset(x, y)[np.array([5])]
    with pytest.raises(ValueError, match="weight_maps must hold one"):
        SegmentationDataset(x, y, weight_maps=[np.ones((16, 16))])
    # Different sizes batch only with a crop.
    ds = SegmentationDataset([x[0, 0], x[1, 0, :12]], [y[0], y[1, :12]])
    with pytest.raises(ValueError, match="cannot be batched; set crop_size"):
        ds[np.array([0, 1])]
    assert SegmentationDataset([x[0, 0], x[1, 0, :12]], [y[0], y[1, :12]],
                               crop_size=8)[np.array([0, 1])][0].shape == (2, 1, 8, 8)


# --- files ---------------------------------------------------------------------------------


def test_from_folders_png_and_tiff(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    x, y = synthetic_cells(3, size=20, seed=5)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        img = (np.clip(x[i, 0], 0, 1) * 255).astype(np.uint8)
        ext = ".png" if i < 2 else ".tif"
        Image.fromarray(img).save(tmp_path / "images" / f"cell{i}{ext}")
        suffix = "_mask" if i == 1 else ""
        Image.fromarray((y[i] * 255).astype(np.uint8)).save(
            tmp_path / "masks" / f"cell{i}{suffix}.png")
    ds = SegmentationDataset.from_folders(str(tmp_path / "images"), str(tmp_path / "masks"),
                                          binary=True)
    assert len(ds) == 3 and ds.channels == 1
    for i in range(3):
        np.testing.assert_array_equal(ds.masks[i], y[i])
        np.testing.assert_array_equal(ds.images[i][0], (np.clip(x[i, 0], 0, 1) * 255)
                                      .astype(np.uint8))
    (tmp_path / "images" / "extra.png").write_bytes(
        (tmp_path / "images" / "cell0.png").read_bytes())
    with pytest.raises(ValueError, match="no mask in .* for extra.png"):
        SegmentationDataset.from_folders(str(tmp_path / "images"), str(tmp_path / "masks"))
    with pytest.raises(FileNotFoundError, match="no image folder"):
        SegmentationDataset.from_folders(str(tmp_path / "nope"), str(tmp_path / "masks"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_builtin_tiff_reader_matches_pillow(tmp_path, dtype):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    a = (rng.random((13, 17)) * 200).astype(dtype)
    path = str(tmp_path / "a.tif")
    Image.fromarray(a).save(path)  # Pillow writes uncompressed TIFF by default
    np.testing.assert_array_equal(seg._read_tiff(path), a)
    np.testing.assert_array_equal(read_image(path), a)


def test_read_image_without_pillow(tmp_path, monkeypatch):
    path = shared_data("nuclei", "img2d.tif")
    with_pil = read_image(path) if "PIL" in sys.modules or _has_pil() else None
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails
    a = read_image(path)
    assert a.shape == (512, 512) and a.dtype == np.uint16
    if with_pil is not None:
        np.testing.assert_array_equal(a, with_pil)
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImportError, match="needs Pillow: pip install 'cnnrs\\[image\\]'"):
        read_image(str(png))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="is not a TIFF file"):
        read_image(str(bad))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_image(str(tmp_path / "missing.tif"))


def _has_pil():
    try:
        import PIL  # noqa: F401
        return True
    except ImportError:
        return False


def test_nuclei_split_is_disjoint_and_standardised():
    root = shared_data("nuclei")
    img, labels = load_nuclei(root)
    assert img.shape == labels.shape == (512, 512) and labels.max() > 100
    d = nuclei_split(root)
    assert d["train_image"].shape == (1, 512, 384) and d["val_image"].shape == (1, 512, 128)
    assert d["train_mask"].shape == (512, 384) and d["val_mask"].shape == (512, 128)
    np.testing.assert_allclose(d["train_image"][0] * d["std"] + d["mean"], img[:, :384],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(d["val_image"][0] * d["std"] + d["mean"], img[:, 384:],
                               rtol=1e-5, atol=1e-3)
    assert abs(d["train_image"].mean()) < 1e-4 and abs(d["train_image"].std() - 1) < 1e-4
    np.testing.assert_array_equal(d["val_mask"], labels[:, 384:] > 0)
    # Crops from the training part never contain validation pixels.
    ds = SegmentationDataset(d["train_image"], d["train_mask"][None], crop_size=128,
                             flip=True, rot90=True, samples_per_epoch=8, seed=0)
    assert ds.images[0].shape == (1, 512, 384)


# --- synthetic cells and the weight map ----------------------------------------------------


def test_synthetic_cells_are_deterministic_and_cell_like():
    x, y = synthetic_cells(5, size=(48, 64), seed=7)
    assert x.shape == (5, 1, 48, 64) and x.dtype == np.float32
    assert y.shape == (5, 48, 64) and y.dtype == np.int64 and set(np.unique(y)) <= {0, 1}
    x2, y2 = synthetic_cells(5, size=(48, 64), seed=7)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(y, synthetic_cells(5, size=(48, 64), seed=8)[1])
    xi, yi = synthetic_cells(5, size=(48, 64), seed=7, instances=True)
    np.testing.assert_array_equal(xi, x)
    np.testing.assert_array_equal(yi > 0, y == 1)
    assert yi.max() > 1
    x, y = synthetic_cells(20, size=96, seed=0)
    assert 0.08 < y.mean() < 0.35
    # Cells are brighter than the background.
    assert x[:, 0][y == 1].mean() > x[:, 0][y == 0].mean() + 0.3
    with pytest.raises(ValueError, match="synthetic_cells: n must be"):
        synthetic_cells(-1)


def np_weight_map(labels, w0, sigma, balance):
    """Brute force: distance from every pixel to every object, all pairs."""
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w]
    ds = []
    for k in np.unique(labels[labels > 0]):
        oy, ox = np.nonzero(labels == k)
        d = np.sqrt((yy[..., None] - oy) ** 2 + (xx[..., None] - ox) ** 2).min(-1)
        ds.append(d)
    ds = np.sort(np.stack(ds), axis=0)
    fg = labels > 0
    wc = np.ones((h, w))
    if balance:
        wc = np.where(fg, fg.size / (2 * fg.sum()), fg.size / (2 * (~fg).sum()))
    border = w0 * np.exp(-((ds[0] + ds[1]) ** 2) / (2 * sigma**2))
    return wc + np.where(fg, 0.0, border)


@pytest.mark.parametrize("seed", range(3))
def test_unet_weight_map_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((40, 44), np.int64)
    for k in range(1, 6):
        cy, cx, r = rng.integers(4, 36), rng.integers(4, 40), rng.integers(2, 6)
        yy, xx = np.mgrid[0:40, 0:44]
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    if len(np.unique(labels)) < 3:
        labels[0:2, 0:2] = 9
        labels[-2:, -2:] = 10
    for w0, sigma, balance in ((10.0, 5.0, True), (5.0, 2.0, False)):
        got = unet_weight_map(labels, w0=w0, sigma=sigma, balance=balance)
        want = np_weight_map(labels, w0, sigma, balance)
        # Beyond 4 sigma of an object the border term is left out: below w0 * exp(-8).
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=w0 * np.exp(-8) * 1.01)
    batch = unet_weight_map(np.stack([labels, labels]))
    assert batch.shape == (2, 40, 44)
    with pytest.raises(ValueError, match="unet_weight_map: labels must be an integer"):
        unet_weight_map(labels.astype(np.float32))

"""Batched augmentation: what each transform does, seeding, errors."""

import numpy as np
import pytest

import cnnrs
from cnnrs.data import DataLoader, TensorDataset
from cnnrs.data import transforms as T


def batch(n=8, c=2, h=6, w=5):
    return np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)


def test_random_crop_is_a_padded_window_and_seeded():
    x = batch()
    cnnrs.manual_seed(3)
    y = T.RandomCrop((6, 5), padding=2, fill=-1)(x)
    cnnrs.manual_seed(3)
    assert np.array_equal(T.RandomCrop((6, 5), padding=2, fill=-1)(x), y)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1)
    for i in range(len(x)):
        assert any(np.array_equal(y[i], padded[i, :, a:a + 6, b:b + 5])
                   for a in range(5) for b in range(5))
    assert T.RandomCrop(4)(x).shape == (8, 2, 4, 4)


def test_flip_shift_noise_cutout_normalize():
    x = batch(n=200)
    f = T.RandomHorizontalFlip()(x)
    flipped = [not np.array_equal(f[i], x[i]) for i in range(200)]
    assert 60 < sum(flipped) < 140
    for i in np.flatnonzero(flipped):
        assert np.array_equal(f[i], x[i, :, :, ::-1])
    s = T.RandomShift(1)(x)
    assert s.shape == x.shape and set(np.unique(s)) <= set(np.unique(x)) | {0.0}
    z = T.GaussianNoise(0.5)(np.zeros((50, 1, 20, 20), np.float32))
    assert abs(z.std() - 0.5) < 0.02 and abs(z.mean()) < 0.02
    c = T.Cutout(2)(np.ones((4, 3, 6, 6), np.float32))
    assert np.all(((c == 0).sum((2, 3)) >= 1) & ((c == 0).sum((2, 3)) <= 4))
    n = T.Normalize([1.0, 2.0], [2.0, 4.0])(np.ones((1, 2, 1, 1), np.float32) * 3)
    assert n.ravel().tolist() == [1.0, 0.25]


def test_affine_identity_and_rotation_keeps_centre():
    x = np.random.default_rng(0).random((4, 1, 9, 9)).astype(np.float32)
    assert np.allclose(T.RandomAffine(0, (1, 1))(x), x, atol=1e-5)
    r = T.RandomRotation(30)(x)
    assert np.allclose(r[:, :, 4, 4], x[:, :, 4, 4], atol=1e-5)
    z = T.RandomScale(2.0, 2.0)(x)
    assert np.allclose(z[:, :, 4, 4], x[:, :, 4, 4], atol=1e-5)


def test_compose_on_tensor_and_in_dataloader():
    aug = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip(), T.Normalize(0, 1)])
    out = aug(cnnrs.tensor(batch()))
    assert isinstance(out, cnnrs.Tensor) and out.shape == (8, 2, 4, 4)
    ds = TensorDataset(batch(), np.arange(8))
    xb, yb = next(iter(DataLoader(ds, batch_size=8, transform=aug)))
    assert xb.shape == (8, 2, 4, 4) and yb.tolist() == list(range(8))
    assert "RandomCrop" in repr(aug)


def test_errors():
    with pytest.raises(ValueError, match="random_crop: crop size"):
        T.RandomCrop(20)(batch())
    with pytest.raises(ValueError, match="expected a 4-D batch"):
        T.RandomHorizontalFlip()(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="RandomHorizontalFlip: p must be"):
        T.RandomHorizontalFlip(2)
    with pytest.raises(ValueError, match="normalize: mean has 3 values"):
        T.Normalize([1, 2, 3], [1])(batch())
    with pytest.raises(ValueError, match="Normalize: std must be non-zero"):
        T.Normalize(0, 0)
    with pytest.raises(ValueError, match="RandomAffine: scale"):
        T.RandomAffine(0, (2, 1))
    with pytest.raises(ValueError, match="GaussianNoise: std"):
        T.GaussianNoise(-1)

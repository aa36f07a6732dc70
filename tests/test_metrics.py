"""cnnrs.metrics: dice, iou and confusion_matrix against per-class numpy
set counting."""

import numpy as np
import pytest

import cnnrs
from cnnrs.metrics import confusion_matrix, dice, iou


def np_scores(pred, target, c, ignore=None):
    keep = np.ones(target.shape, bool) if ignore is None else target != ignore
    d, j = [], []
    for k in range(c):
        p, g = (pred == k) & keep, (target == k) & keep
        inter, union = (p & g).sum(), (p | g).sum()
        d.append(2 * inter / (p.sum() + g.sum()) if union else np.nan)
        j.append(inter / union if union else np.nan)
    return np.array(d), np.array(j)


@pytest.mark.parametrize("seed", range(10))
def test_dice_and_iou_match_set_counting(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 5))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    target = rng.integers(0, c, shape)
    pred = np.where(rng.random(shape) < 0.7, target, rng.integers(0, c, shape))
    ignore = None if seed % 2 else c - 1
    want_d, want_j = np_scores(pred, target, c, ignore)
    np.testing.assert_allclose(dice(pred, target, c, ignore_index=ignore), want_d)
    np.testing.assert_allclose(iou(pred, target, c, ignore_index=ignore), want_j)
    assert dice(pred, target, c, ignore_index=ignore, average="macro") == \
        pytest.approx(np.nanmean(want_d))
    # Scores (N, C, *) are reduced by argmax over the class dim.
    scores = np.eye(c)[pred].transpose(0, 3, 1, 2) + rng.random((shape[0], c) + shape[1:]) * 0.1
    np.testing.assert_allclose(iou(scores.astype(np.float32), target, c, ignore_index=ignore),
                               want_j)
    np.testing.assert_allclose(iou(cnnrs.tensor(scores), target, c, ignore_index=ignore),
                               want_j)


def test_binary_logit_channel_and_empty_class():
    target = np.array([[[0, 1], [1, 1]]])
    logits = np.array([[[[-1.0, 2.0], [0.5, -3.0]]]], np.float32)  # (1, 1, 2, 2)
    # pred = [[0, 1], [1, 0]]: fg tp=2 fp=0 fn=1.
    np.testing.assert_allclose(dice(logits, target), [2 / 3, 0.8])
    np.testing.assert_allclose(iou(logits, target), [0.5, 2 / 3])
    s = dice(np.zeros((2, 2)), np.zeros((2, 2)), num_classes=3)
    assert s[0] == 1.0 and np.isnan(s[1]) and np.isnan(s[2])
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], [0, 1, 0]), [[1, 1], [0, 1]])


def test_metric_errors():
    with pytest.raises(ValueError, match="dice: pred shape"):
        dice(np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="iou: target label 4 is out of range for 3"):
        iou(np.zeros(3, np.int64), np.array([0, 1, 4]), num_classes=3)
    with pytest.raises(TypeError, match="dice: pred must hold integer class labels"):
        dice(np.full((2, 2), 0.5), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="iou: average must be"):
        iou([0, 1], [0, 1], average="micro")
    with pytest.raises(ValueError, match=r"dice: scores of shape \(1, 2, 3, 3\)"):
        dice(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 2), np.int64))

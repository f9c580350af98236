"""Stage 1's Dice on the test split per wear and per mask type (``SegScores.breakdown``), against a hand count."""

import numpy as np
import pytest
import torch

from unmask.evaluation.scores import SegScores


def _maps(*pairs: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true maps (N x 1 x 4 x 4) whose i-th pair overlaps as given: (predicted px, shared px)."""
    pred, gt = np.zeros((len(pairs), 1, 4, 4), np.float32), np.zeros((len(pairs), 1, 4, 4), np.float32)
    for i, (predicted, shared) in enumerate(pairs):
        pred.reshape(len(pairs), -1)[i, :predicted] = 1
        gt.reshape(len(pairs), -1)[i, predicted - shared:predicted - shared + 4] = 1  # 4 true pixels
    return pred, gt


def test_dice_per_wear_is_the_mean_of_its_samples_and_an_absent_group_says_why():
    seg = SegScores()
    pred, gt = _maps((4, 4), (4, 2), (2, 2))  # Dice 1, 2*2/8 = 0.5, 2*2/6 = 2/3

    class Batch:
        gt_map = gt

    seg.update(torch.from_numpy(pred), Batch)
    out = seg.breakdown("wear", ["correct", "nose", "nose"], ("correct", "nose", "mouth"))
    assert out["dice_wear_correct"] == (pytest.approx(1.0), None)
    assert out["dice_wear_nose"] == (pytest.approx((0.5 + 2 / 3) / 2), None)
    assert out["n_wear_nose"] == (2.0, None)
    assert out["dice_wear_mouth"] == (None, "no sample with wear mouth") and out["n_wear_mouth"] == (0.0, None)
    assert list(seg.breakdown("mask", ["a", "b", "a"], ())) == ["n_mask_a", "dice_mask_a", "n_mask_b", "dice_mask_b"]
    assert seg.breakdown("wear", ["correct"], ("correct",)) == {}  # not one label per scored sample

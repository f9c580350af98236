import numpy as np
import pytest
import torch

from unmask import metrics
from unmask.metrics import segmentation

TARGET = np.array([
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
], np.uint8)
PRED = np.array([
    [1, 1, 1, 0],
    [1, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
], np.uint8)  # TP 3, FP 1, FN 1, TN 11


def test_hand_computed_example():
    counts = segmentation.confusion_counts(PRED, TARGET)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (3, 1, 1, 11)
    assert segmentation.pixel_accuracy(PRED, TARGET) == pytest.approx(14 / 16)
    assert segmentation.dice(PRED, TARGET) == pytest.approx(6 / 8)
    assert segmentation.iou(PRED, TARGET) == pytest.approx(3 / 5)


def test_both_empty_is_perfect():
    empty = np.zeros((8, 8), bool)
    assert segmentation.dice(empty, empty) == 1.0
    assert segmentation.iou(empty, empty) == 1.0
    assert segmentation.pixel_accuracy(empty, empty) == 1.0


def test_one_empty_scores_zero():
    empty = np.zeros((4, 4), bool)
    assert segmentation.dice(empty, TARGET) == 0.0
    assert segmentation.iou(empty, TARGET) == 0.0
    assert segmentation.dice(TARGET, empty) == 0.0
    assert segmentation.iou(TARGET, empty) == 0.0
    assert segmentation.pixel_accuracy(empty, TARGET) == pytest.approx(12 / 16)


def test_identical_maps():
    for score in (segmentation.dice, segmentation.iou, segmentation.pixel_accuracy):
        assert score(TARGET, TARGET) == 1.0


def test_map_encodings_agree():
    as_bool = segmentation.iou(PRED.astype(bool), TARGET.astype(bool))
    assert segmentation.iou(PRED * 255, TARGET * 255) == as_bool
    assert segmentation.iou(PRED * 0.9, TARGET.astype(np.float32)) == as_bool  # floats thresholded at 0.5
    assert segmentation.iou(torch.from_numpy(PRED)[None], torch.from_numpy(TARGET)) == as_bool


def test_ambiguous_maps_are_refused():
    with pytest.raises(ValueError, match="only"):
        segmentation.dice(PRED * 7, TARGET)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segmentation.dice(PRED * 2.0, TARGET)
    with pytest.raises(ValueError, match="shape"):
        segmentation.dice(PRED, TARGET[:3])


def test_batch_per_image_and_aggregation():
    empty = np.zeros((4, 4), bool)
    preds = np.stack([PRED, empty, empty]).astype(bool)
    targets = np.stack([TARGET, empty, TARGET]).astype(bool)
    scores = segmentation.per_image_scores(preds, targets)
    np.testing.assert_allclose(scores["dice"], [0.75, 1.0, 0.0])
    np.testing.assert_allclose(scores["iou"], [0.6, 1.0, 0.0])
    np.testing.assert_allclose(scores["pixel_accuracy"], [14 / 16, 1.0, 12 / 16])

    acc = metrics.get("iou").accumulator()
    acc.update_batch(preds, targets)
    result = acc.result()
    assert result.value == pytest.approx((0.6 + 1.0 + 0.0) / 3)
    np.testing.assert_allclose(result.per_image, [0.6, 1.0, 0.0])
    assert result.count == 3
    # pooled: TP 3, FP 1, FN 1 + 4 -> 3 / 9
    assert result.details["pooled"] == pytest.approx(3 / 9)


def test_accumulator_one_at_a_time_equals_batch():
    single = metrics.get("dice").accumulator()
    for p, t in [(PRED, TARGET), (TARGET, TARGET)]:
        single.update(p, t)
    assert single.result().value == pytest.approx((0.75 + 1.0) / 2)

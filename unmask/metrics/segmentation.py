"""Stage-1 metrics: predicted binary mask maps against ground-truth maps.

Protocol
--------
Maps are compared pixel by pixel as booleans (see ``_inputs`` for the accepted encodings; the
"positive" class is the mask region). With TP, FP, FN, TN the pixel counts of one image:

* pixel accuracy = (TP + TN) / (H * W)
* Dice (F1)      = 2 TP / (2 TP + FP + FN)
* IoU (Jaccard)  = TP / (TP + FP + FN)

Edge cases: when prediction and ground truth are both empty, Dice = IoU = 1 (a perfect answer
to "there is no mask here"); when exactly one of them is empty, Dice = IoU = 0. Pixel accuracy is
always defined.

Aggregation over a set: the reported value is the mean of the per-image values ("macro", each
image weighs the same). ``aggregate`` also gives the pooled ("micro") value computed from the
summed counts, where large masks weigh more; it is not the default because per-image averaging is
what per-image tables and the paper's per-sample evaluation use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _inputs


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def pixel_accuracy(self) -> float:
        return (self.tp + self.tn) / (self.tp + self.fp + self.fn + self.tn)

    @property
    def dice(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator

    @property
    def iou(self) -> float:
        denominator = self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else self.tp / denominator


def confusion_counts(pred, target) -> Counts:
    """Pixel counts of one predicted map against its ground truth."""
    pred = _inputs.binary_map(pred, "pred")
    target = _inputs.binary_map(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    tp = int(np.count_nonzero(pred & target))
    fp = int(np.count_nonzero(pred & ~target))
    fn = int(np.count_nonzero(~pred & target))
    return Counts(tp=tp, fp=fp, fn=fn, tn=pred.size - tp - fp - fn)


def pixel_accuracy(pred, target) -> float:
    """Fraction of pixels where the predicted map equals the ground truth."""
    return confusion_counts(pred, target).pixel_accuracy


def dice(pred, target) -> float:
    """Dice coefficient of the positive (mask) class; 1 when both maps are empty."""
    return confusion_counts(pred, target).dice


def iou(pred, target) -> float:
    """Intersection over union of the positive (mask) class; 1 when both maps are empty."""
    return confusion_counts(pred, target).iou


SCORES = ("pixel_accuracy", "dice", "iou")


def per_image_scores(preds, targets) -> dict[str, np.ndarray]:
    """Per-image pixel accuracy, Dice and IoU of a batch; each an ``(N,)`` float64 array."""
    preds = _inputs.map_batch(preds, "preds")
    targets = _inputs.map_batch(targets, "targets")
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} differ in shape")
    counts = [confusion_counts(p, t) for p, t in zip(preds, targets, strict=True)]
    return {name: np.array([getattr(c, name) for c in counts], np.float64) for name in SCORES}


def aggregate(counts: list[Counts]) -> dict[str, float]:
    """Mean of per-image values (``<name>``) and pooled-count values (``<name>_pooled``)."""
    if not counts:
        raise ValueError("no maps to aggregate")
    result = {name: float(np.mean([getattr(c, name) for c in counts])) for name in SCORES}
    pooled = Counts(*(sum(getattr(c, f) for c in counts) for f in ("tp", "fp", "fn", "tn")))
    result.update({f"{name}_pooled": getattr(pooled, name) for name in SCORES})
    return result

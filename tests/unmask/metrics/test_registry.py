import math

import numpy as np
import pytest
import torch

from unmask import metrics
from unmask.metrics import lpips as lpips_module


def test_names_and_properties():
    assert metrics.list_metrics() == [
        "pixel_accuracy", "dice", "iou", "psnr", "ssim", "fid", "niqe", "brisque", "lpips", "sharpness"]
    assert metrics.list_metrics(inputs=metrics.MAPS) == ["pixel_accuracy", "dice", "iou"]
    assert metrics.list_metrics(kind=metrics.DATASET) == ["fid"]
    lower = [name for name, m in metrics.REGISTRY.items() if not m.higher_is_better]
    assert lower == ["fid", "niqe", "brisque", "lpips"]
    assert metrics.get("psnr").unit == "dB"
    assert metrics.REGISTRY["ssim"] is metrics.get("ssim")


def test_unknown_metric():
    with pytest.raises(KeyError, match="known: pixel_accuracy"):
        metrics.get("msssim")


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        metrics.REGISTRY["x"] = metrics.get("psnr")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(metrics.get("psnr"))


def test_best_marks_by_direction():
    assert metrics.get("psnr").best([20.0, None, 31.5, 25.0]) == 2
    assert metrics.get("fid").best([20.0, None, 31.5, math.nan, 12.0]) == 4
    assert metrics.get("fid").best([None, None]) is None
    assert metrics.get("sharpness").best([0.5, 1.3, None, 0.9]) == 3  # closest to 1
    assert metrics.get("sharpness").direction == "closer to 1"


def test_dataset_metric_is_not_per_image():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="accumulator"):
        metrics.get("fid")(image, image)


def test_full_reference_metric_needs_target():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="target"):
        metrics.get("psnr")(image)


def test_every_metric_reports_uniformly():
    """One loop over the registry works for all metrics, available or not."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 256, 256, 3)).astype(np.uint8)
    maps = rng.integers(0, 2, (2, 256, 256)).astype(bool)
    for name, metric in metrics.REGISTRY.items():
        acc = metric.accumulator()
        data = maps if metric.inputs == metrics.MAPS else images
        acc.update_batch(data, data[::-1])
        result = acc.result()
        assert result.name == name
        available = metric.availability()
        if available and metric.kind == metrics.PER_IMAGE:
            assert result.value is not None and result.count == 2
        if not available:
            assert result.value is None and result.reason == available.reason


def test_lpips_unavailable_without_weights():
    availability = metrics.get("lpips").availability()
    assert not availability and "weights" in availability.reason
    with pytest.raises(metrics.MetricUnavailable):
        metrics.get("lpips")(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_lpips_with_given_weights(tmp_path):
    """Random weights in the published layouts: checks loading and the metric's properties only."""
    torch.manual_seed(0)
    model = lpips_module.LPIPSAlex()
    backbone = {}
    for n, index in enumerate(lpips_module.CONV_INDICES):
        backbone[f"features.{index}.weight"] = model.convs[n].weight.detach()
        backbone[f"features.{index}.bias"] = model.convs[n].bias.detach()
    backbone["classifier.1.weight"] = torch.zeros(1)  # extra keys of torchvision's file are ignored
    linear = {f"lin{n}.model.1.weight": lin.weight.detach().abs() for n, lin in enumerate(model.lins)}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(linear, tmp_path / "alex.pth")
    options = dict(backbone_weights=tmp_path / "alexnet.pth", linear_weights=tmp_path / "alex.pth")

    entry = metrics.get("lpips")
    assert entry.availability(**options)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    assert entry(a, a, **options) == pytest.approx(0.0, abs=1e-7)
    assert entry(a, b, **options) == pytest.approx(entry(b, a, **options), rel=1e-5)
    assert entry(a, b, **options) > 0

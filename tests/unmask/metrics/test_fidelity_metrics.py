import importlib.util
import math

import numpy as np
import pytest
import torch

from unmask import metrics
from unmask.metrics import fidelity


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    # a smooth image with texture, in 20..230 so that +-5 never clips
    y, x = np.mgrid[0:64, 0:64]
    base = 125 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    noise = np.random.default_rng(1).normal(0, 10, (64, 64, 3))
    return np.clip(base[..., None] + noise + [0, 10, -10], 20, 230).round().astype(np.uint8)


def test_psnr_of_constant_difference(image):
    expected = 10 * math.log10(255 ** 2 / 25)  # MSE 25
    assert fidelity.psnr(image + 5, image) == pytest.approx(expected, abs=1e-12)
    assert fidelity.psnr(image, image - 5) == pytest.approx(expected, abs=1e-12)


def test_psnr_pools_the_mse_over_channels(image):
    shifted = image.copy()
    shifted[..., 1] += 5  # MSE over all values: 25 / 3
    assert fidelity.psnr(shifted, image) == pytest.approx(10 * math.log10(255 ** 2 * 3 / 25), abs=1e-12)


def test_psnr_of_equal_images_is_inf(image):
    assert fidelity.psnr(image, image) == math.inf


def test_psnr_matches_torchmetrics(image):
    from torchmetrics.functional.image import peak_signal_noise_ratio

    noisy = np.clip(image + np.random.default_rng(2).normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    p, t = (torch.from_numpy(a).permute(2, 0, 1)[None].double() for a in (noisy, image))
    reference = float(peak_signal_noise_ratio(p, t, data_range=255.0))
    assert fidelity.psnr(noisy, image) == pytest.approx(reference, abs=1e-5)  # torchmetrics: float32 constants


def test_ssim_of_equal_images_is_one(image):
    assert fidelity.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_drops_with_degradation(image):
    rng = np.random.default_rng(3)
    light = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    light_ssim, heavy_ssim = fidelity.ssim(light, image), fidelity.ssim(heavy, image)
    assert 0 < heavy_ssim < light_ssim < 1


def test_ssim_constants_are_the_papers():
    assert (fidelity.SSIM_K1 * fidelity.DATA_RANGE) ** 2 == pytest.approx((0.01 * 255) ** 2)
    assert (fidelity.SSIM_K2 * fidelity.DATA_RANGE) ** 2 == pytest.approx((0.03 * 255) ** 2)
    assert 2 * int(3.5 * fidelity.SSIM_SIGMA + 0.5) + 1 == fidelity.SSIM_WINDOW == 11


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image not installed")
def test_ssim_matches_skimage_reference(image):
    from skimage.metrics import structural_similarity

    noisy = np.clip(image + np.random.default_rng(4).normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    reference = structural_similarity(
        noisy, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=2,
    )
    assert fidelity.ssim(noisy, image) == pytest.approx(reference, abs=1e-9)


def test_batches_equal_single_images(image):
    preds = np.stack([image + 5, image, np.clip(image.astype(int) + 9, 0, 255).astype(np.uint8)])
    targets = np.stack([image, image, image])
    pairs = list(zip(preds, targets, strict=True))
    np.testing.assert_allclose(fidelity.psnr_batch(preds, targets), [fidelity.psnr(p, t) for p, t in pairs])
    np.testing.assert_allclose(fidelity.ssim_batch(preds, targets), [fidelity.ssim(p, t) for p, t in pairs])
    # torch uint8 (N, 3, H, W) batches are accepted too
    as_torch = torch.from_numpy(preds).permute(0, 3, 1, 2)
    np.testing.assert_allclose(fidelity.ssim_batch(as_torch, targets), fidelity.ssim_batch(preds, targets))


def test_accumulator_mean_of_per_image(image):
    acc = metrics.get("psnr").accumulator()
    acc.update_batch(np.stack([image + 5, image - 5]), np.stack([image, image]))
    acc.update(image + 5, image)
    result = acc.result()
    assert result.count == 3
    assert result.value == pytest.approx(10 * math.log10(255 ** 2 / 25))


def test_float_images_are_refused(image):
    with pytest.raises(TypeError, match="to_uint8"):
        fidelity.psnr(image / 255.0, image)
    with pytest.raises(ValueError, match="shape"):
        fidelity.ssim(image[:32], image)


def test_to_uint8_quantizes_model_outputs():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5])
    np.testing.assert_array_equal(metrics.to_uint8(x), [0, 64, 128, 255, 255])
    np.testing.assert_array_equal(metrics.to_uint8(np.array([0.0, 0.5, 1.0]), value_range=(0, 1)), [0, 128, 255])

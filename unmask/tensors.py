"""Image tensor conventions: uint8 0..255 <-> the models' float [-1, 1], and channels-first -> last.

Images travel as uint8 (loader batches, saved outputs, metric inputs) and the networks see float32
in [-1, 1] (``images_to_model``); ``quantize`` is the way back, rounding to the nearest level like
saving a PNG. Torch keeps channels first (``N x C x H x W``), numpy images and the metrics take
them last (``to_nhwc``). Imported by models, data, training, prediction and metrics alike, so it
imports nothing of the project.
"""

from __future__ import annotations

import numpy as np

try:  # torch is a project dependency, but the numpy paths (unmask.metrics' numpy API) must not need it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_tensor(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def images_to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float() / 127.5 - 1.0


def quantize(images, value_range: tuple[float, float] = (-1.0, 1.0)):
    """Float images in ``value_range`` -> uint8 0..255, clamped, rounded to nearest (ties to even).

    A torch tensor stays a tensor on its device and is computed in float32, the models' precision
    (what training validation, prediction and evaluation save); anything else becomes a numpy
    array computed in float64. The layout is kept.
    """
    lo, hi = value_range
    if is_tensor(images):
        return ((images.detach().float().clamp(lo, hi) - lo) * (255.0 / (hi - lo))).round().to(torch.uint8)
    x = np.asarray(images, dtype=np.float64)
    return np.clip(np.rint((x - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def to_nhwc(images: torch.Tensor) -> np.ndarray:
    """An ``N x C x H x W`` tensor (any device) -> an ``N x H x W x C`` numpy array, values unchanged."""
    return images.permute(0, 2, 3, 1).detach().cpu().numpy()

"""Photometric augmentation for stage 1: masks in colours and light that maskgen never draws.

A segmenter trained on synthetic masks learns their palette: a plaid, red or printed cloth mask, or
a white one in warm light, is then missed in a real photo. Two batch-level transforms, drawn per image:

* ``recolor``: the mask pixels (the ground-truth map) get a random hue rotation, saturation, tint and
  brightness; the face is untouched, so the map still marks exactly the mask.
* ``jitter``: the whole image gets a random brightness, contrast and saturation (camera and light).

Parameters are drawn from a generator seeded by (seed, rank, step): a resumed run augments exactly as an
uninterrupted one, and the global RNG streams (data order, flips, initialisation) are not touched.
"""

from __future__ import annotations

import hashlib
import math

import torch

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB -> gray
HUE_ROTATION = math.pi  # any hue
RECOLOR_SATURATION = (0.3, 2.0)  # washed out .. vivid
RECOLOR_TINT = 0.35  # per-channel gain: gives white and grey masks a colour
RECOLOR_BRIGHTNESS = (0.55, 1.25)  # dark cloth .. bright white
JITTER_BRIGHTNESS = (0.75, 1.25)
JITTER_CONTRAST = (0.75, 1.25)
JITTER_SATURATION = (0.6, 1.4)


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _hue_rotations(angles: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) rotations of RGB about the grey axis (Rodrigues' formula)."""
    k = torch.full((3,), 1 / math.sqrt(3.0))
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    outer = torch.outer(k, k)
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    return cos * torch.eye(3) + sin * cross + (1 - cos) * outer


def _saturate(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    gray = torch.einsum("bchw,c->bhw", images, images.new_tensor(LUMA))[:, None]
    return gray + factors[:, None, None, None] * (images - gray)


def _apply_per_image(images: torch.Tensor, chosen: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    return torch.where(chosen[:, None, None, None], transformed, images)


def photometric(masked: torch.Tensor, mask_map: torch.Tensor, *, recolor: float, jitter: float,
                seed: int, rank: int, step: int) -> torch.Tensor:
    """Augmented copy of ``masked`` (Bx3xHxW in [-1, 1]); ``mask_map`` Bx1xHxW in {0, 1}.

    ``recolor`` and ``jitter`` are the shares of images each transform is applied to.
    """
    if recolor <= 0 and jitter <= 0:
        return masked
    n = masked.shape[0]
    key = hashlib.sha256(f"seg-augment/{seed}/{rank}/{step}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
    # Every parameter is drawn for every image, used or not: the draws do not depend on the shares.
    do_recolor = torch.rand(n, generator=gen) < recolor
    rotations = _hue_rotations(_uniform(gen, n, -HUE_ROTATION, HUE_ROTATION))
    saturation = _uniform(gen, n, *RECOLOR_SATURATION)
    tint = 1 + RECOLOR_TINT * (2 * torch.rand(n, 3, generator=gen) - 1)
    brightness = _uniform(gen, n, *RECOLOR_BRIGHTNESS)
    do_jitter = torch.rand(n, generator=gen) < jitter
    jitter_brightness = _uniform(gen, n, *JITTER_BRIGHTNESS)
    jitter_contrast = _uniform(gen, n, *JITTER_CONTRAST)
    jitter_saturation = _uniform(gen, n, *JITTER_SATURATION)

    device = masked.device
    images = (masked.float() + 1) / 2
    if recolor > 0:
        mask_colours = torch.einsum("bij,bjhw->bihw", rotations.to(device), images)
        mask_colours = _saturate(mask_colours, saturation.to(device))
        mask_colours = mask_colours * (tint * brightness[:, None]).to(device)[:, :, None, None]
        inside = mask_map.float()
        recoloured = images * (1 - inside) + mask_colours.clamp(0, 1) * inside
        images = _apply_per_image(images, do_recolor.to(device), recoloured)
    if jitter > 0:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        jittered = (images - mean) * jitter_contrast.to(device)[:, None, None, None] + mean
        jittered = _saturate(jittered * jitter_brightness.to(device)[:, None, None, None], jitter_saturation.to(device))
        images = _apply_per_image(images, do_jitter.to(device), jittered.clamp(0, 1))
    return (images * 2 - 1).to(masked.dtype)

"""Sharpness of a filled region: its fine detail relative to the ground truth's.

    sharpness(pred, target, region) = sum_region Lap(Y_pred)^2 / sum_region Lap(Y_target)^2

``Y`` is BT.601 luma (0.299 R + 0.587 G + 0.114 B) in float64 on 0..255, ``Lap`` the 4-neighbour
Laplacian ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], reflect-101 border), ``region`` a binary map of the
pixels to judge (the evaluation passes the ground-truth mask map: the pixels every method has to
fill; ``None`` = the whole image). 1.0: as much high-frequency energy as the truth; below 1,
blurrier (what a reconstruction loss alone produces, averaging plausible faces); above 1, noisier
or over-sharpened. A region that is flat in both images scores 1; an empty region is an error.

Unlike NIQE (96 px patches, >= 192 px images) and FID (Inception weights) it runs at any size and
offline, so a CPU evaluation at 128 px can still tell a sharp fill from a blurry one.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import _inputs

LUMA = np.array([0.299, 0.587, 0.114])
EPS = 1e-9  # per pixel: both images flat over the region -> 1


def laplacian_energy(img: np.ndarray, region: np.ndarray | None = None) -> float:
    """Sum of the squared Laplacian of the luma of a uint8 RGB image over ``region``."""
    luma = img.astype(np.float64) @ LUMA
    lap = cv2.Laplacian(luma, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    squared = lap * lap
    return float(squared.sum() if region is None else squared[region].sum())


def sharpness(pred, target, region=None) -> float:
    """Laplacian energy of ``pred`` over that of ``target`` inside ``region`` (see module doc)."""
    pred = _inputs.image(pred, "pred")
    target = _inputs.image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    if region is not None:
        region = _inputs.binary_map(region, "region")
        if region.shape != pred.shape[:2]:
            raise ValueError(f"region {region.shape} does not match the images {pred.shape[:2]}")
        if not region.any():
            raise ValueError("empty region: nothing to judge")
    n = pred.shape[0] * pred.shape[1] if region is None else int(region.sum())
    return (laplacian_energy(pred, region) + EPS * n) / (laplacian_energy(target, region) + EPS * n)

"""Classical inpainting baselines: fill the mask region of a masked face without a network.

A baseline is a function ``(image RGB uint8 HxWx3, map bool HxW, radius) -> RGB uint8 HxWx3``,
registered by a short name that becomes part of the method names in the results
(``telea_pred_map``, ``ns_gt_map``; see ``unmask.evaluation``). Add one with::

    @register("mybaseline", "My baseline")
    def my_baseline(image, mask_map, radius): ...

Every baseline's output is fused like MURF: pixels outside the map are the input's, exactly, so
a baseline and the two-stage network differ only inside the map they are given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_RADIUS = 5  # px; cv2.inpaint's neighbourhood. Larger blurs more but bridges wide masks no better

BaselineFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Baseline:
    name: str  # short, lowercase: used in method names and metric keys
    label: str  # for tables and figures
    fn: BaselineFn

    def __call__(self, image: np.ndarray, mask_map: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
        mask_map = np.asarray(mask_map).astype(bool)
        out = self.fn(image, mask_map, radius)
        return np.where(mask_map[..., None], out, image)

    def batch(self, images: np.ndarray, maps: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
        """N x H x W x 3 uint8 images, N x H x W maps -> N x H x W x 3 uint8 outputs."""
        return np.stack([self(image, mask_map, radius) for image, mask_map in zip(images, maps, strict=True)])


BASELINES: dict[str, Baseline] = {}


def register(name: str, label: str) -> Callable[[BaselineFn], BaselineFn]:
    def add(fn: BaselineFn) -> BaselineFn:
        if name in BASELINES:
            raise ValueError(f"baseline {name!r} is already registered")
        BASELINES[name] = Baseline(name, label, fn)
        return fn
    return add


def get(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None


def _cv2_inpaint(image: np.ndarray, mask_map: np.ndarray, radius: int, flag: int) -> np.ndarray:
    # cv2.inpaint treats the three channels alike, so RGB needs no conversion to BGR
    return cv2.inpaint(np.ascontiguousarray(image), mask_map.astype(np.uint8) * 255, radius, flag)


@register("telea", "Telea")
def telea(image: np.ndarray, mask_map: np.ndarray, radius: int) -> np.ndarray:
    """Telea 2004, fast marching: each pixel from a weighted average of its known neighbours."""
    return _cv2_inpaint(image, mask_map, radius, cv2.INPAINT_TELEA)


@register("ns", "Navier-Stokes")
def navier_stokes(image: np.ndarray, mask_map: np.ndarray, radius: int) -> np.ndarray:
    """Bertalmio et al. 2001: isophotes continued into the hole along fluid-dynamics equations."""
    return _cv2_inpaint(image, mask_map, radius, cv2.INPAINT_NS)

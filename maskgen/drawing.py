"""Drawing primitives the drawn masks share (``maskgen.templates``, ``maskgen.neckwear``): the template record,
the canvas they are drawn on, curves, anti-aliased fills and lines, smooth noise."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CANVAS_W, CANVAS_H = 560, 420  # procedural template size; warped down to the crop
SUPERSAMPLE = 2  # supersampling for anti-aliased edges
FIELD_STEP = 2  # drawn shading fields are computed on a grid this much coarser (see _draw)


@dataclass(frozen=True)
class MaskTemplate:
    name: str
    mask_type: str
    variant: str  # front, left or right (the side the face is turned to)
    alpha: np.ndarray  # (H, W) float32 in [0, 1]
    shade: np.ndarray  # (H, W) float32 multiplicative shading, ~1
    anchors: np.ndarray  # (6, 2) a..f in template pixels
    rgb: np.ndarray | None = None  # (H, W, 3) uint8 for pack templates; None = coloured per sample


def curve(p0, p1, p2, n=24) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = map(np.asarray, (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def fill(canvas: np.ndarray, polygon: np.ndarray, value: float) -> None:
    pts = np.round(polygon * SUPERSAMPLE * 16).astype(np.int32)  # 4 fractional bits for smooth edges
    cv2.fillPoly(canvas, [pts], value, lineType=cv2.LINE_AA, shift=4)


def line(canvas: np.ndarray, polyline: np.ndarray, value: float, width: float) -> None:
    pts = np.round(polyline * SUPERSAMPLE * 16).astype(np.int32)
    cv2.polylines(canvas, [pts], False, value, max(1, round(width * SUPERSAMPLE)), lineType=cv2.LINE_AA, shift=4)


def draw_circle(canvas: np.ndarray, centre, radius: float, value: float, thickness: int = -1) -> None:
    """A disc (``thickness`` -1) or a ring, anti-aliased, on a canvas ``SUPERSAMPLE`` times the drawing's size."""
    c = tuple(int(round(v * SUPERSAMPLE * 16)) for v in centre)
    width = thickness if thickness < 0 else thickness * SUPERSAMPLE
    cv2.circle(canvas, c, int(round(radius * SUPERSAMPLE * 16)), value, width, lineType=cv2.LINE_AA, shift=4)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Noise blurred by ``sigma`` px, zero mean and unit standard deviation (float32)."""
    step = max(1, int(sigma // 3))
    if step > 1:  # coarse noise: blur a smaller field and enlarge it, the same look for much less
        small = rng.standard_normal((shape[0] // step + 1, shape[1] // step + 1), dtype=np.float32)
        small = cv2.GaussianBlur(small, (0, 0), sigma / step)
        noise = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    else:  # uniform noise is cheaper to draw; blurred, it looks the same
        noise = rng.random(shape, dtype=np.float32)
        if sigma > 0:
            noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    noise -= float(noise.mean())
    return noise / max(float(noise.std()), 1e-6)


def gauss(x: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-(x * x) / (2.0 * width * width))

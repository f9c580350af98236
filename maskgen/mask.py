"""Mask placement: six anchors on the face, a jaw-following warp, shading, and compositing.

Anchors follow MaskTheFace: ``b`` on the nose bridge, ``e`` just under the chin, ``a``/``c`` where a
line across the face at the top of the mask meets the jaw outline, ``d``/``f`` where a lower line
meets it. The template is warped with two homographies, one per half (a-b-e-d and b-c-f-e), so
each side follows its own half of the jaw: a turned face gets a mask that wraps with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .landmarks import CHIN, JAW, NOSE_TIP
from .templates import BOTTOM_SIDE_DROP, TOP_SIDE_DROP, MaskTemplate

NOSE_BRIDGE_POSITION = 0.45  # b between the top of the nose bridge (27) and the nose tip (30)
CHIN_OVERHANG = 0.06  # e sits this fraction of the face height below the chin landmark
SIDE_OVERHANG = 0.06  # a, c, d, f sit this fraction of the face width outside the jaw line
ALPHA_THRESHOLD = 0.5  # a pixel belongs to the map when the warped alpha reaches this


def _jaw_crossing(jaw: np.ndarray, origin: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """First point of the jaw polyline whose position along ``axis`` equals ``origin``'s."""
    s = (jaw - origin) @ axis
    for i in range(len(jaw) - 1):
        if s[i] == 0:
            return jaw[i]
        if s[i] * s[i + 1] < 0:
            t = s[i] / (s[i] - s[i + 1])
            return jaw[i] + t * (jaw[i + 1] - jaw[i])
    return jaw[int(np.argmin(np.abs(s)))]


def face_anchors(landmarks: np.ndarray) -> np.ndarray:
    """The six anchors a..f (6, 2) on a face with 68 landmarks."""
    p = np.asarray(landmarks, np.float64)
    top = p[27]
    axis = p[CHIN] - top
    height = float(np.linalg.norm(axis))
    axis = axis / max(height, 1e-9)
    b = top + NOSE_BRIDGE_POSITION * (p[NOSE_TIP] - top)
    e = p[CHIN] + CHIN_OVERHANG * height * axis
    jaw = p[JAW]
    left_jaw, right_jaw = jaw[:9], jaw[8:][::-1]  # both run from the ear (top) down to the chin
    width = float(np.linalg.norm(jaw[0] - jaw[-1]))
    anchors = []
    for drop, side in ((TOP_SIDE_DROP, "top"), (BOTTOM_SIDE_DROP, "bottom")):
        level = b + drop * (e - b)
        left = _jaw_crossing(left_jaw, level, axis)
        right = _jaw_crossing(right_jaw, level, axis)
        out = (right - left) / max(np.linalg.norm(right - left), 1e-9)
        anchors.append((left - SIDE_OVERHANG * width * out, right + SIDE_OVERHANG * width * out))
    (a, c), (d, f) = anchors
    return np.stack([a, b, c, d, e, f])


@dataclass
class PlacedMask:
    rgb: np.ndarray  # (H, W, 3) float32, mask colours in the crop
    alpha: np.ndarray  # (H, W) float32 coverage in [0, 1]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the region the mask may touch


def _roi(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def warp_template(template: MaskTemplate, rgb: np.ndarray, anchors: np.ndarray, shape: tuple[int, int]) -> PlacedMask:
    """Warp a coloured template (rgb float32 HxWx3 in template space) onto the face anchors."""
    src = template.anchors.astype(np.float32)
    dst = anchors.astype(np.float32)
    halves = ((0, 1, 4, 3), (1, 2, 5, 4))  # a-b-e-d, b-c-f-e
    th, tw = template.alpha.shape
    corners = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
    layers = np.dstack([rgb.astype(np.float32), template.alpha])
    homographies, extents = [], []
    for idx in halves:
        hom = cv2.getPerspectiveTransform(src[list(idx)], dst[list(idx)])
        projected = cv2.perspectiveTransform(corners[None], hom)[0]
        if not np.all(np.isfinite(projected)):
            raise ValueError("degenerate mask anchors")
        homographies.append(hom)
        extents.append(projected)
    x0, y0, x1, y1 = _roi(np.vstack(extents), shape)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("mask falls outside the crop")
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    size = (x1 - x0, y1 - y0)
    # Which half each crop pixel takes its colour from: the side of the b-e line it lies on.
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    b, e = dst[1], dst[4]
    left_side = ((e[0] - b[0]) * (yy - b[1]) - (e[1] - b[1]) * (xx - b[0])) > 0
    out = None
    for hom, use in zip(homographies, (left_side, ~left_side)):
        warped = cv2.warpPerspective(layers, shift @ hom, size, flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = warped if out is None else np.where(use[..., None], warped, out)
    return PlacedMask(rgb=out[..., :3], alpha=np.clip(out[..., 3], 0, 1), box=(x0, y0, x1, y1))


def composite(face: np.ndarray, placed: PlacedMask, light_match: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Put the mask on the face; return (masked image uint8, binary map uint8 0/255).

    The mask's brightness follows the face: its colours are scaled by the face's local
    low-frequency luminance (relative to a neutral grey) under the mask, blended by ``light_match``.
    Pixels with alpha < 0.5 are left exactly as they were.
    """
    x0, y0, x1, y1 = placed.box
    region = face[y0:y1, x0:x1].astype(np.float32)
    cover = placed.alpha >= ALPHA_THRESHOLD
    masked = face.copy()
    binary = np.zeros(face.shape[:2], np.uint8)
    if not cover.any():
        return masked, binary
    lum = region @ np.array([0.299, 0.587, 0.114], np.float32)
    # Low-pass the face's light: small downsample-blur-upsample keeps it cheap at 512 px.
    h, w = lum.shape
    small = cv2.resize(lum, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    light = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    gain = np.clip(light / 150.0, 0.25, 1.6)  # 150: the luminance of a well-lit face
    gain = 1.0 + light_match * (gain - 1.0)
    rgb = placed.rgb * gain[..., None]
    a = np.where(cover, placed.alpha, 0.0)[..., None]
    blended = region + a * (rgb - region)
    patch = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    masked[y0:y1, x0:x1] = np.where(cover[..., None], patch, face[y0:y1, x0:x1])
    binary[y0:y1, x0:x1] = cover.astype(np.uint8) * 255
    return masked, binary

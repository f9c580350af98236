"""Mask placement: six anchors on the face, a jaw-following warp, shading, and compositing.

Anchors follow MaskTheFace: ``b`` on the nose bridge, ``e`` just under the chin, ``a``/``c`` where a
line across the face at the top of the mask meets the jaw outline, ``d``/``f`` where a lower line
meets it. The template is warped with two homographies, one per half (a-b-e-d and b-c-f-e), so
each side follows its own half of the jaw: a turned face gets a mask that wraps with it.

How the mask is worn (``WEARS``, after MaskedFace-Net) moves ``b`` and ``e``: ``nose`` puts the
top edge under the nostrils, ``chin`` lifts the bottom edge above the chin tip, and the side anchors
follow from ``b`` and ``e``. ``mouth`` (nose and mouth uncovered) pulls the mask down onto the chin
and, unlike the others, also sets the side anchors: the mask keeps its width below the lips (the ear
loops hold its sides at the jaw at ``b``'s level) instead of narrowing with the jaw.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from .appearance import scene_tint
from .face_points import CHIN, JAW, LOWER_LIP_BOTTOM, NOSE_BOTTOM, NOSE_TIP, UPPER_LIP_TOP
from .format import WEARS
from .templates import BOTTOM_SIDE_DROP, TOP_SIDE_DROP, MaskTemplate, once_per_template

NOSE_BRIDGE_POSITION = 0.45  # b between the top of the nose bridge (27) and the nose tip (30)
CHIN_OVERHANG = 0.06  # e sits this fraction of the face height below the chin landmark
SIDE_OVERHANG = 0.06  # a, c, d, f sit this fraction of the face width outside the jaw line
ALPHA_THRESHOLD = 0.5  # a pixel belongs to the map when the warped alpha reaches this

# Mostly correct (the task the paper measures), with every wrong wear common enough to learn from.
# "nose" gets the largest wrong share: it is by far the most frequent one in photos (MaskedFace-Net
# finds ~80% of incorrectly worn masks leave only the nose out).
DEFAULT_WEAR_WEIGHTS = {"correct": 0.6, "nose": 0.2, "mouth": 0.1, "chin": 0.1}
UNDER_NOSE_POSITION = 0.3  # nose: b this far from the nostrils (33) to the upper lip (51)
UNDER_LIP_POSITION = 0.3  # mouth: b this far from the lower lip (57) to the chin (8)
ON_CHIN_OVERHANG = 0.2  # mouth: a mask pulled down hangs further below the chin (fraction of face height)
ABOVE_CHIN_POSITION = 0.5  # chin: e this far from the lower lip (57) to the chin (8)


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


def face_anchors(landmarks: np.ndarray, wear: str = "correct") -> np.ndarray:
    """The six anchors a..f (6, 2) on a face with 68 landmarks, for a mask worn as ``wear``."""
    if wear not in WEARS:
        raise ValueError(f"unknown wear {wear!r}; choose from {', '.join(WEARS)}")
    p = np.asarray(landmarks, np.float64)
    top = p[27]
    axis = p[CHIN] - top
    height = float(np.linalg.norm(axis))
    axis = axis / max(height, 1e-9)
    b = top + NOSE_BRIDGE_POSITION * (p[NOSE_TIP] - top)
    e = p[CHIN] + CHIN_OVERHANG * height * axis
    if wear == "nose":
        b = p[NOSE_BOTTOM] + UNDER_NOSE_POSITION * (p[UPPER_LIP_TOP] - p[NOSE_BOTTOM])
    elif wear == "mouth":
        b = p[LOWER_LIP_BOTTOM] + UNDER_LIP_POSITION * (p[CHIN] - p[LOWER_LIP_BOTTOM])
        e = p[CHIN] + ON_CHIN_OVERHANG * height * axis
    elif wear == "chin":
        e = p[LOWER_LIP_BOTTOM] + ABOVE_CHIN_POSITION * (p[CHIN] - p[LOWER_LIP_BOTTOM])
    jaw = p[JAW]
    left_jaw, right_jaw = jaw[:9], jaw[8:][::-1]  # both run from the ear (top) down to the chin
    width = float(np.linalg.norm(jaw[0] - jaw[-1]))
    anchors = []
    for drop in (TOP_SIDE_DROP, BOTTOM_SIDE_DROP):
        level = b + drop * (e - b)
        left = _jaw_crossing(left_jaw, level, axis)
        right = _jaw_crossing(right_jaw, level, axis)
        out = (right - left) / max(np.linalg.norm(right - left), 1e-9)
        anchors.append((left - SIDE_OVERHANG * width * out, right + SIDE_OVERHANG * width * out))
    (a, c), (d, f) = anchors
    if wear == "mouth":
        # Below the lips the jaw narrows to the chin: a pulled-down mask keeps its width (the ear loops
        # hold its sides up), so its sides sit on the jaw at b's level and hang straight down from there.
        level_left, level_right = _jaw_crossing(left_jaw, b, axis), _jaw_crossing(right_jaw, b, axis)
        out = (level_right - level_left) / max(np.linalg.norm(level_right - level_left), 1e-9)
        a, c = level_left - SIDE_OVERHANG * width * out, level_right + SIDE_OVERHANG * width * out
        hang = BOTTOM_SIDE_DROP * float((e - b) @ axis) * axis
        d, f = a + hang, c + hang
    return np.stack([a, b, c, d, e, f])


def narrowed(anchors: np.ndarray, fit: float) -> np.ndarray:
    """``anchors`` with the sides (a, c, d, f) pulled towards the b-e line to ``fit`` of their distance:
    a mask narrower than the face (a small size, a cup that does not reach the cheeks)."""
    anchors = np.array(anchors, np.float64)  # a copy: the caller's anchors stay as they are
    if fit == 1.0:
        return anchors
    b, e = anchors[1], anchors[4]
    axis = (e - b) / max(float(np.linalg.norm(e - b)), 1e-9)
    for i in (0, 2, 3, 5):  # b and e stay, so each side's foot is taken on the unchanged line
        foot = b + float((anchors[i] - b) @ axis) * axis
        anchors[i] = foot + fit * (anchors[i] - foot)
    return anchors


def _roi(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def warp_template(template: MaskTemplate, colour: np.ndarray, anchors: np.ndarray,
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Warp template-space ``colour`` layers (H x W or H x W x C float32) and the template's alpha
    onto the face anchors.

    Returns the warped colour and alpha over the crop region they can touch, and that region
    (x0, y0, x1, y1).
    """
    src = template.anchors.astype(np.float32)
    dst = anchors.astype(np.float32)
    corners = _drawn_corners(template)
    homographies = _half_homographies(src, dst, _half_hulls(template))
    extents = []
    for hom in homographies:
        projected = cv2.perspectiveTransform(corners[None], hom)[0]
        if not np.all(np.isfinite(projected)):
            raise ValueError("degenerate mask anchors")
        extents.append(projected)
    x0, y0, x1, y1 = _roi(np.vstack(extents), shape)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("mask falls outside the crop")
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    size = (x1 - x0, y1 - y0)

    def warp(layer: np.ndarray, hom: np.ndarray, width: int, dx: int = 0) -> np.ndarray:
        to_roi = np.array([[1, 0, -dx], [0, 1, 0], [0, 0, 1]], np.float64) @ shift @ hom
        return cv2.warpPerspective(layer, to_roi, (width, size[1]), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    if homographies[0] is homographies[1]:  # one homography for the whole template
        alpha = warp(template.alpha, homographies[0], size[0])
        return warp(colour, homographies[0], size[0]), np.clip(alpha, 0, 1, out=alpha), (x0, y0, x1, y1)
    # Which half each crop pixel takes its colour from: the side of the b-e line it lies on.
    b, e = dst[1], dst[4]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - b[1]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - b[0]
    right_side = (((e[0] - b[0]) * ys - (e[1] - b[1]) * xs) <= 0).view(np.uint8)
    # Each half is warped only over the columns it can own: left of the b-e line's rightmost x, etc.
    split_hi = int(min(size[0], max(0, np.ceil(max(b[0], e[0])) - x0 + 1)))
    split_lo = int(min(size[0], max(0, np.floor(min(b[0], e[0])) - x0)))
    out = np.zeros((size[1], size[0]) + colour.shape[2:], np.float32)
    alpha = np.zeros((size[1], size[0]), np.float32)
    # Each homography sees only its own half of the template's alpha: a half whose quad is thin (a
    # turned template) extrapolates wildly beyond it, and must not paint the other side. Colour
    # needs no such cut: where a half's alpha is 0, its colour is never shown.
    alpha_left, alpha_right = _alpha_halves(template)
    if split_hi > 0:
        out[:, :split_hi] = warp(colour, homographies[0], split_hi).reshape(out[:, :split_hi].shape)
        alpha[:, :split_hi] = warp(alpha_left, homographies[0], split_hi)
    if split_lo < size[0]:
        width = size[0] - split_lo
        where = np.ascontiguousarray(right_side[:, split_lo:])
        # cv2.copyTo writes through the column views (numpy's masked copyto is ~50x slower here).
        cv2.copyTo(warp(colour, homographies[1], width, split_lo), where, out[:, split_lo:])
        cv2.copyTo(warp(alpha_right, homographies[1], width, split_lo), where, alpha[:, split_lo:])
    return out, np.clip(alpha, 0, 1, out=alpha), (x0, y0, x1, y1)


HALVES = ((0, 1, 4, 3), (1, 2, 5, 4))  # a-b-e-d and b-c-f-e


def _convex_quad(points: np.ndarray) -> bool:
    """Strictly convex and clockwise in image coordinates (the order a-b-e-d / b-c-f-e runs)."""
    crosses = []
    for i in range(4):
        p, q, r = points[i], points[(i + 1) % 4], points[(i + 2) % 4]
        crosses.append((q[0] - p[0]) * (r[1] - q[1]) - (q[1] - p[1]) * (r[0] - q[0]))
    return all(c > 1e-6 for c in crosses)


def _tame(hom: np.ndarray, points: np.ndarray) -> bool:
    """Whether ``hom`` keeps ``points`` (n x 3, homogeneous) in front of its horizon, with a projective
    scale that varies at most MAX_PERSPECTIVE times across them."""
    if not len(points):
        return True
    w = points @ hom[2]
    return bool(w.min() > 0 and w.max() <= MAX_PERSPECTIVE * w.min())


def _half_homographies(src: np.ndarray, dst: np.ndarray, hulls: tuple[np.ndarray, np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One homography per half when both halves are proper quads in template and face and each keeps
    its half's drawing (``hulls``) tame; else one least-squares homography over all six anchors
    (MaskTheFace's own method), used for both; if even that is not tame, a least-squares affine map.

    Why the checks: a turned template (MaskTheFace's gas_left) has a thin a-b-e-d quad with a filter
    cartridge far outside it; its four-point homography extrapolates the cartridge across the horizon,
    and the drawing streaks over half the crop."""
    if all(_convex_quad(src[list(h)]) and _convex_quad(dst[list(h)]) for h in HALVES):
        halves = tuple(cv2.getPerspectiveTransform(src[list(h)], dst[list(h)]) for h in HALVES)
        if all(_tame(hom, hull) for hom, hull in zip(halves, hulls, strict=True)):
            return halves
    hom, _ = cv2.findHomography(src, dst, 0)
    if hom is None:
        raise ValueError("degenerate mask anchors")
    if not _tame(hom, np.vstack(hulls)):
        ones = np.ones((len(src), 1))
        affine, *_ = np.linalg.lstsq(np.hstack([src, ones]), dst.astype(np.float64), rcond=None)
        hom = np.vstack([affine.T, [0.0, 0.0, 1.0]])
    return hom, hom


MAX_PERSPECTIVE = 4.0  # real perspective across a mask is ~1.1x; sound half-quad fits stay under ~3x
_CORNERS: dict[int, tuple[MaskTemplate, np.ndarray]] = {}
_HULLS: dict[int, tuple[MaskTemplate, tuple[np.ndarray, np.ndarray]]] = {}
_HALVES: dict[int, tuple[MaskTemplate, tuple[np.ndarray, np.ndarray]]] = {}
HALF_OVERLAP = 4.0  # template pixels each half reaches past the b-e line, so the seam has no gap


def _alpha_halves(template: MaskTemplate) -> tuple[np.ndarray, np.ndarray]:
    """The template's alpha cut to its left and right of the b-e line (overlapping a little); cached."""
    def halves() -> tuple[np.ndarray, np.ndarray]:
        h, w = template.alpha.shape
        b, e = template.anchors[1], template.anchors[4]
        ys = np.arange(h, dtype=np.float32)[:, None] - b[1]
        xs = np.arange(w, dtype=np.float32)[None, :] - b[0]
        side = ((e[0] - b[0]) * ys - (e[1] - b[1]) * xs) / max(float(np.linalg.norm(e - b)), 1e-9)
        return (np.where(side > -HALF_OVERLAP, template.alpha, 0).astype(np.float32),
                np.where(side < HALF_OVERLAP, template.alpha, 0).astype(np.float32))
    return once_per_template(_HALVES, id(template), template, halves)


def _half_hulls(template: MaskTemplate) -> tuple[np.ndarray, np.ndarray]:
    """The convex hull of each alpha half's drawn part, homogeneous (n x 3): a homography's projective
    scale is linear in x and y, so its extremes over a half lie on these points; cached."""
    def hulls() -> tuple[np.ndarray, np.ndarray]:
        out = []
        for half in _alpha_halves(template):
            ys, xs = np.nonzero(half > 0.02)
            if not len(xs):  # a half with nothing drawn: any map keeps it tame
                out.append(np.zeros((0, 3)))
                continue
            hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.float32))[:, 0].astype(np.float64)
            out.append(np.hstack([hull, np.ones((len(hull), 1))]))
        return tuple(out)
    return once_per_template(_HULLS, id(template), template, hulls)


def _drawn_corners(template: MaskTemplate) -> np.ndarray:
    """Corners of the template's drawn part: only these are projected to find the crop region."""
    def corners() -> np.ndarray:
        ys, xs = np.nonzero(template.alpha > 0.02)
        return np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1],
                         [xs.min(), ys.max() + 1]], np.float32)
    return once_per_template(_CORNERS, id(template), template, corners)


LIGHT_GRID = 8  # px of the mask region per cell of the coarse luminance the light plane is fitted to
LIGHT_DARK_SHARE = 0.4  # the darkest cells are features (mouth, nostrils, beard), not light: left out


def _light_plane(lum: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Luminance plane a + b x + c y fitted to the brighter part of ``lum`` under ``cover``, on a
    coarse grid (float32, about 1/LIGHT_GRID of the region's size)."""
    h, w = lum.shape
    size = (max(2, w // LIGHT_GRID), max(2, h // LIGHT_GRID))
    small = cv2.resize(lum, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    inside = cv2.resize(cover, size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if inside.sum() < 3:  # a sliver of a mask: fit to the whole region
        inside[:] = True
    ys, xs = _grid(size[1], size[0])
    values = small[inside]
    bright = values >= _lower_quantile(values, LIGHT_DARK_SHARE)
    design = np.stack([np.ones(bright.sum()), xs[inside][bright], ys[inside][bright]], axis=1)
    normal = design.T @ design
    # The normal equations (3 x 3) when well conditioned: cheaper than lstsq's SVD, and the same plane to
    # float32 (the rebuilt default dataset was byte-identical).
    if np.linalg.cond(normal) < 1e8:
        coef = np.linalg.solve(normal, design.T @ values[bright])
    else:  # too few distinct cells to fix a plane (a row or a column of them): least squares' minimum norm
        coef = np.linalg.lstsq(design, values[bright], rcond=None)[0]
    return (coef[0] + coef[1] * xs + coef[2] * ys).astype(np.float32)


@lru_cache(maxsize=256)
def _grid(h: int, w: int) -> np.ndarray:
    """``np.mgrid[0:h, 0:w]`` (int), read-only: the light plane's grids come in few sizes."""
    grid = np.mgrid[0:h, 0:w]
    grid.flags.writeable = False
    return grid


def _lower_quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation, the same float), by a partial sort: numpy's
    general quantile costs more than the whole light fit here."""
    index = (values.size - 1) * q
    below = math.floor(index)
    above = min(below + 1, values.size - 1)
    part = np.partition(values, (below, above))
    a, b, t = part[below], part[above], index - below
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)  # numpy's _lerp


def composite(face: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int],
              light_match: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Put warped mask colours (float32, over ``box``) on the face; return (masked uint8, map 0/255).

    The mask's brightness follows the light on the face: its colours are scaled by a plane fitted
    to the face's luminance under the mask (relative to a well-lit face), blended by ``light_match``.
    A plane keeps the level and direction of the lighting but none of the features: a blurred copy
    of the luminance would show the mouth and nostrils through the mask as dark ghosts. The mask
    also takes a little of the crop's colour cast (``appearance.scene_tint``).
    Pixels with alpha < 0.5 are left exactly as they were.
    """
    x0, y0, x1, y1 = box
    masked = face.copy()
    binary = np.zeros(face.shape[:2], np.uint8)
    cover = (alpha >= ALPHA_THRESHOLD).view(np.uint8)
    if not cover.any():
        return masked, binary
    region = face[y0:y1, x0:x1]
    h, w = cover.shape
    light = _light_plane(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY), cover)
    # gain = 1 + light_match * (clip(light / 150, 0.25, 1.6) - 1), 150 being a well-lit face;
    # computed on a coarse grid, then interpolated to the mask region (a plane stays a plane).
    np.clip(light, 0.25 * 150.0, 1.6 * 150.0, out=light)
    light *= light_match / 150.0
    light += 1.0 - light_match
    gain = cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
    # OpenCV for the per-pixel passes: numpy's broadcasting over the colour axis is several times slower.
    # The mask also takes a share of the scene's colour cast (see appearance.scene_tint).
    tint = scene_tint(face)
    lit = cv2.multiply(rgb, cv2.merge([gain * tint[0], gain * tint[1], gain * tint[2]]))
    blend = cv2.blendLinear(region.astype(np.float32), lit, 1.0 - alpha, alpha)
    cv2.copyTo(cv2.add(blend, 0.0, dtype=cv2.CV_8U), cover, masked[y0:y1, x0:x1])  # rounds, saturates
    binary[y0:y1, x0:x1] = cover * np.uint8(255)
    return masked, binary

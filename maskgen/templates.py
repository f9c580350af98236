"""Mask templates: the project's own, drawn procedurally, and MaskTheFace-format packs.

A template is an RGBA-like drawing of a mask plus six anchor points, in MaskTheFace's order:

    a (top left)     b (top centre, nose bridge)      c (top right)
    d (bottom left)  e (bottom centre, under the chin) f (bottom right)

``maskgen.mask`` maps these onto six points found on the face. Procedural templates carry no
colour of their own (``rgb is None``): a colour and a texture are chosen per sample and multiplied
by the template's shading (pleats, seams, edge falloff). Pack templates keep their own pixels.
"""

from __future__ import annotations

import configparser
import hashlib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

MASK_TYPES = ("surgical", "n95", "kn95", "cloth", "gas")
TEXTURES = ("solid", "stripes", "checks", "dots", "floral", "plaid", "camo")
TWO_ACCENT_TEXTURES = ("plaid", "camo")  # a third colour: see ``second_pattern``
DEFAULT_TYPE_WEIGHTS = {"surgical": 0.35, "n95": 0.15, "kn95": 0.2, "cloth": 0.2, "gas": 0.1}

# Named colours (RGB) and which types come in them.
COLORS = {
    "white": (236, 236, 232), "light_blue": (150, 196, 222), "blue": (60, 110, 190), "navy": (35, 45, 80),
    "green": (130, 190, 160), "pink": (236, 170, 190), "black": (32, 32, 34), "grey": (140, 140, 144),
    "dark_grey": (72, 74, 78), "red": (180, 40, 45), "beige": (214, 196, 168), "yellow": (232, 206, 110),
    "purple": (120, 80, 150), "olive": (100, 110, 60), "teal": (50, 120, 125),
}
TYPE_COLORS = {
    "surgical": ("light_blue", "white", "green", "pink", "black", "blue", "grey"),
    "n95": ("white", "grey", "beige", "yellow", "light_blue"),
    "kn95": ("white", "black", "grey", "pink", "blue", "navy", "beige"),
    "cloth": tuple(COLORS),
    "gas": ("black", "dark_grey", "olive", "teal", "grey"),
}
# Filter cartridges (maskgen.cartridges): black or grey organic-vapour cans, magenta P100 pancakes, yellow
# and olive combination cartridges; a felt pad's retainer ring takes one too (the felt has its own colours).
# A respirator's rubber body is rarely the same colour.
PART_COLORS = {"gas": ("white", "pink", "purple", "grey", "black", "yellow", "olive", "beige")}
# A drawn mask's width against the face's (its sides' distance from the b-e line), drawn per sample:
# cup respirators come in sizes, and many sit well inside the cheeks; the others reach the jaw.
FIT_RANGE = {"n95": (0.74, 1.0)}
TYPE_TEXTURE_WEIGHTS = {  # solid, stripes, checks, dots, floral, plaid, camo
    "surgical": (0.9, 0.04, 0.02, 0.02, 0.02, 0, 0),
    "n95": (1.0, 0, 0, 0, 0, 0, 0),
    "kn95": (0.8, 0.05, 0.05, 0.03, 0.03, 0, 0.04),
    "cloth": (0.26, 0.12, 0.1, 0.12, 0.14, 0.16, 0.1),
    "gas": (0.9, 0, 0, 0, 0, 0, 0.1),
}

# Anchor heights as fractions of b->e, taken from MaskTheFace's surgical template so the two
# template families agree on where a/c and d/f sit on the face.
TOP_SIDE_DROP = 0.17
BOTTOM_SIDE_DROP = 0.67

CANVAS_W, CANVAS_H = 560, 420  # procedural template size; warped down to the crop
_SS = 2  # supersampling for anti-aliased edges
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


def _anchors(left=40.0, right=520.0, top=50.0, bottom=400.0, side_inset=0.0, bottom_inset=10.0) -> np.ndarray:
    cx = (left + right) / 2
    ya = top + TOP_SIDE_DROP * (bottom - top)
    yd = top + BOTTOM_SIDE_DROP * (bottom - top)
    return np.array([[left + side_inset, ya], [cx, top], [right - side_inset, ya],
                     [left + bottom_inset, yd], [cx, bottom], [right - bottom_inset, yd]])


def _curve(p0, p1, p2, n=24) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = map(np.asarray, (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _fill(canvas: np.ndarray, polygon: np.ndarray, value: float) -> None:
    pts = np.round(polygon * _SS * 16).astype(np.int32)  # 4 fractional bits for smooth edges
    cv2.fillPoly(canvas, [pts], value, lineType=cv2.LINE_AA, shift=4)


def _line(canvas: np.ndarray, polyline: np.ndarray, value: float, width: float) -> None:
    pts = np.round(polyline * _SS * 16).astype(np.int32)
    cv2.polylines(canvas, [pts], False, value, max(1, round(width * _SS)), lineType=cv2.LINE_AA, shift=4)


def _circle(canvas: np.ndarray, centre, radius: float, value: float, thickness: int = -1) -> None:
    c = tuple(int(round(v * _SS * 16)) for v in centre)
    cv2.circle(canvas, c, int(round(radius * _SS * 16)), value, thickness if thickness < 0 else thickness * _SS,
               lineType=cv2.LINE_AA, shift=4)


def _down(canvas: np.ndarray) -> np.ndarray:
    return cv2.resize(canvas, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA)


def _outline(kind: str, an: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = an
    if kind in ("surgical", "cloth"):
        sag = 14 if kind == "surgical" else 4
        top = np.vstack([_curve(a, (a + b) / 2 + [0, -sag * 0.3], b), _curve(b, (b + c) / 2 + [0, -sag * 0.3], c)[1:]])
        right = _curve(c, (c + f) / 2 + [18, 0], f)[1:]
        bottom = np.vstack([_curve(f, (f + e) / 2 + [30, 40], e)[1:], _curve(e, (e + d) / 2 + [-30, 40], d)[1:]])
        left = _curve(d, (d + a) / 2 + [-18, 0], a)[1:]
        return np.vstack([top, right, bottom, left])
    if kind in ("n95", "gas"):
        top = np.vstack([_curve(a, (a + b) / 2 + [-40, -50], b), _curve(b, (b + c) / 2 + [40, -50], c)[1:]])
        right = _curve(c, (c + f) / 2 + [25, 0], f)[1:]
        bottom = np.vstack([_curve(f, f + [0, 90], e)[1:], _curve(e, d + [0, 90], d)[1:]])
        left = _curve(d, (d + a) / 2 + [-25, 0], a)[1:]
        return np.vstack([top, right, bottom, left])
    # kn95: pointed at nose and chin, straight-ish folds
    top = np.vstack([_curve(a, (a + b) / 2 + [0, -10], b), _curve(b, (b + c) / 2 + [0, -10], c)[1:]])
    right = _curve(c, (c + f) / 2 + [12, 0], f)[1:]
    bottom = np.vstack([_curve(f, (f + e) / 2 + [10, 30], e)[1:], _curve(e, (e + d) / 2 + [-10, 30], d)[1:]])
    left = _curve(d, (d + a) / 2 + [-12, 0], a)[1:]
    return np.vstack([top, right, bottom, left])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
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


def _gauss(x: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-(x * x) / (2.0 * width * width))


# How many drawn styles each kind comes in (chosen per sample, see ``choose_style``), and how often
# each appears: N95s with and without an exhalation valve, KN95s with a valve now and then.
STYLE_WEIGHTS = {"surgical": (1.0,), "n95": (0.65, 0.35), "kn95": (0.85, 0.15), "cloth": (1.0,), "gas": (1.0,)}


def choose_style(kind: str, rng: np.random.Generator) -> int:
    """A drawn style of ``kind`` (0 is the plain one); one draw from ``rng`` whatever the kind."""
    weights = STYLE_WEIGHTS.get(kind, (1.0,))
    x, total = float(rng.random()) * sum(weights), 0.0
    for style, weight in enumerate(weights):
        total += weight
        if x < total:
            return style
    return len(weights) - 1


def _cord(alpha: np.ndarray, shade: np.ndarray, polyline: np.ndarray, width: float) -> None:
    """A round cord (ear loop, strap): in the alpha, and shaded dark at its sides, lit along its middle."""
    _line(alpha, polyline, 1.0, width)
    _line(shade, polyline, 0.62, width)
    _line(shade, polyline - [0, width * 0.15], 0.92, max(1.0, width * 0.45))


def _draw(kind: str) -> MaskTemplate:
    """A drawn template: the outline (alpha) and a multiplicative shading that reads as a photographed
    mask: the form turning away from the camera at the sides and chin, a darker contact band along
    the edge, the kind's relief (pleats, cup, folds, seams, nose wire, valve), fabric grain, and round
    cords. Drawn once per kind per process (styles: see ``builtin_template``)."""
    big = (CANVAS_H * _SS, CANVAS_W * _SS)
    if kind == "gas":
        an = _anchors(left=110, right=450, top=40, bottom=385)
    elif kind == "kn95":
        an = _anchors(left=40, right=520, top=40, bottom=400, bottom_inset=40)
    else:
        an = _anchors()
    a, b, c, d, e, f = an
    rng = np.random.default_rng((MASK_TYPES.index(kind), 15))
    outline = _outline(kind, an)
    body_big = np.zeros(big, np.float32)
    _fill(body_big, outline, 1.0)
    detail = np.zeros(big, np.float32)  # line details (shading - 1) drawn at twice the size (anti-aliased)
    cords = np.zeros(big, np.float32)
    cord_shade = np.zeros(big, np.float32)  # only read where a cord is drawn
    # Python floats: numpy float64 scalars would turn the float32 fields below into float64 ones.
    cx, half_w, height = float(a[0] + c[0]) / 2, float(c[0] - a[0]) / 2, float(e[1] - b[1])
    top, bx, ex = float(b[1]), float(b[0]), float(e[0])

    def loops(width: float, spread: float = 45) -> None:
        for side in (1, -1):  # ear loops reaching towards the ears
            top_c, bot_c = (a, d) if side == 1 else (c, f)
            ear = (top_c + bot_c) / 2 + [-side * spread, 0]
            loop = np.vstack([_curve(top_c, ear + [0, -40], ear), _curve(ear, ear + [0, 40], bot_c)[1:]])
            _cord(cords, cord_shade, loop, width)

    if kind == "surgical":
        loops(4.5)
    elif kind == "n95":
        for y in (a[1] + 15, d[1] + 20):  # head straps
            _cord(cords, cord_shade, np.array([[a[0] - 40, y - 10], [a[0] + 5, y]]), 6)
            _cord(cords, cord_shade, np.array([[c[0] - 5, y], [c[0] + 40, y - 10]]), 6)
    elif kind == "kn95":
        loops(4.0, 40)
        for t in np.linspace(0.08, 0.92, 11):  # welded dots either side of the central fold
            for dx in (-7, 7):
                _circle(detail, b + t * (e - b) + [dx, 0], 2.0, -0.2)
    elif kind == "cloth":
        loops(6.5, 40)
    elif kind == "gas":
        _line(detail, outline, -0.3, 8)
        # The filter cartridges are drawn on the crop, after the warp (maskgen.cartridges).
        _circle(detail, (b + e) / 2 + [0, 60], 38, -0.35, thickness=5)  # exhalation valve
        _circle(detail, (b + e) / 2 + [0, 60], 20, -0.25)
        for y in (a[1] + 10, d[1] + 25):
            _cord(cords, cord_shade, np.array([[a[0] - 60, y - 10], [a[0] + 5, y]]), 9)
            _cord(cords, cord_shade, np.array([[c[0] - 5, y], [c[0] + 60, y - 10]]), 9)

    body = np.clip(_down(body_big), 0, 1)
    h, w = body.shape
    # The smooth fields (form, contact, relief) are computed on a grid FIELD_STEP times coarser and
    # interpolated: the same look at a quarter of the cost. xx, yy are in full-size pixels.
    gh, gw = h // FIELD_STEP, w // FIELD_STEP
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32) * FIELD_STEP + (FIELD_STEP - 1) / 2
    u = (xx - cx) / half_w  # -1 .. 1 across the mask
    v = (yy - top) / height  # 0 at the nose bridge, 1 under the chin
    dist = cv2.resize(cv2.distanceTransform((body > 0.5).astype(np.uint8), cv2.DIST_L2, 5), (gw, gh),
                      interpolation=cv2.INTER_AREA)
    au = np.minimum(np.abs(u), 1.15)
    # The form: turning away at the sides and under the chin, lit a little from above.
    if kind in ("n95", "gas"):  # a moulded cup: convex all round, a soft highlight on its crown
        form = 1.0 - 0.30 * au ** 2 - 0.22 * np.clip((v - 0.45) / 0.55, 0, 1.2) ** 2 \
            + 0.10 * _gauss(u, 0.3) * _gauss(v - 0.35, 0.2)
    elif kind == "kn95":  # two flat panels meeting at the fold: each a little differently lit
        form = 1.0 - 0.26 * au ** 2.2 + np.where(u < 0, 0.04, -0.04) - 0.12 * np.clip(v - 0.6, 0, 1) ** 1.5
    else:
        sides = 0.34 if kind == "cloth" else 0.28
        form = 1.0 - sides * au ** 2.4 - 0.14 * np.clip(v - 0.55, 0, 1) ** 1.5 + 0.04 * (1 - np.clip(v, 0, 1))
    # Contact: where the mask meets the face it is shadowed by it.
    contact = 1.0 - 0.24 * np.exp(-dist / 7.0)
    relief = np.ones_like(form)
    top_band = np.clip(1.0 - np.abs(u) / 0.45, 0, 1) ** 0.7 * (v < 0.35)  # the nose-wire's reach

    if kind == "surgical":
        pitch = 0.2 * height
        for frac in (0.32, 0.52, 0.72):  # pleats: a lit face rising into the fold, a shadow below it
            fold_y = top + frac * height + 6 - 16 * (1 - np.clip(u, -1.2, 1.2) ** 2)
            t = yy - fold_y
            lit = np.where((t > -0.5 * pitch) & (t <= 0), 0.13 * np.clip(1 + t / (0.5 * pitch), 0, 1) ** 1.6, 0)
            shadow = np.where((t > 0) & (t < 0.4 * pitch), -0.26 * np.clip(1 - t / (0.4 * pitch), 0, 1) ** 1.4, 0)
            relief += lit + shadow - 0.18 * _gauss(t, 1.2)
        # Bound edges: a flat band round the outline, stitched along its inner side.
        relief += 0.04 * (dist < 16) - 0.16 * _gauss(dist - 17, 1.1)
        relief += top_band * (0.14 * _gauss(dist - 12, 2.5) - 0.12 * _gauss(dist - 19, 2.5))  # nose wire
        grain = 0.035 * _smooth_noise(rng, (h, w), 0.7) + 0.05 * _smooth_noise(rng, (h, w), 18)
    elif kind == "n95":
        relief += 0.06 * (dist < 12) - 0.14 * _gauss(dist - 12, 1.3)  # welded rim
        relief += top_band * (0.16 * _gauss(dist - 14, 3) - 0.14 * _gauss(dist - 22, 3))  # nose wire / foam
        grain = 0.05 * _smooth_noise(rng, (h, w), 0.8) + 0.035 * _smooth_noise(rng, (h, w), 30)
    elif kind == "kn95":
        du = xx - (bx + (yy - top) / height * (ex - bx))  # signed distance to the fold
        relief += 0.12 * _gauss(du + 2.5, 1.5) - 0.22 * _gauss(du - 1.5, 1.5)  # the fold's crest and crease
        relief += 0.05 * (dist < 10) - 0.12 * _gauss(dist - 10, 1.2)  # welded edge
        for t in np.arange(0.0, 1.0, 1 / 70):  # weld dots round the edge
            p = outline[min(len(outline) - 1, int(t * len(outline)))]
            inward = np.array([cx, (b[1] + e[1]) / 2]) - p
            _circle(detail, p + 9 * inward / max(np.linalg.norm(inward), 1e-6), 1.8, -0.18)
        relief += top_band * (0.12 * _gauss(dist - 16, 3) - 0.12 * _gauss(dist - 23, 3))  # nose wire
        grain = 0.03 * _smooth_noise(rng, (h, w), 0.7) + 0.03 * _smooth_noise(rng, (h, w), 25)
    elif kind == "cloth":
        ds = xx - (cx + 6 * np.sin(np.pi * np.clip(v, 0, 1)))  # the centre seam, bowed like the outline
        relief += 0.08 * _gauss(ds + 3, 2.5) - 0.22 * _gauss(ds - 1, 1.5)
        relief -= 0.14 * _gauss(dist - 9, 1.2) * (np.sin(xx * 0.45 + yy * 0.45) > -0.2)  # stitched hem
        period = 2 * np.pi / 4.5  # the weave: threads crossing every 4.5 px (about 1.5 mm)
        weave = np.outer(np.sin(np.arange(h, dtype=np.float32) * period),
                         np.sin(np.arange(w, dtype=np.float32) * period))
        grain = 0.035 * weave + 0.04 * _smooth_noise(rng, (h, w), 0.8) + 0.08 * _smooth_noise(rng, (h, w), 22)
    else:  # gas: rubbery, little grain
        grain = 0.02 * _smooth_noise(rng, (h, w), 1.0) + 0.03 * _smooth_noise(rng, (h, w), 30)

    smooth = cv2.resize((form * contact * relief).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    shade = (_down(detail) + 1.0) * smooth * (1.0 + grain)
    cord_alpha = np.clip(_down(cords), 0, 1)
    cord_s = _down(cord_shade) * (1.0 + 0.03 * grain)
    alpha = np.maximum(body, cord_alpha)
    shade = np.where(body >= cord_alpha, shade, cord_s)
    return MaskTemplate(name=kind, mask_type=kind, variant="front", alpha=alpha.astype(np.float32),
                        shade=np.clip(shade, 0.2, 1.6).astype(np.float32), anchors=an.astype(np.float64))


# Exhalation valves (style 1): centre (fractions of the half width from the middle, of the height
# from the nose bridge), radius and slot spacing in template pixels.
VALVES = {"n95": (0.08, 0.52, 46.0, 14.0), "kn95": (-0.45, 0.55, 34.0, 10.0)}


def _with_valve(template: MaskTemplate) -> MaskTemplate:
    """The template with an exhalation valve: a raised disc with a shadowed rim and slots, drawn
    into the shading over the valve's box only (cheap next to drawing the whole template)."""
    a, b, c, _, e, _ = template.anchors
    du, dv, radius, slot = VALVES[template.mask_type]
    vx = float(a[0] + c[0]) / 2 + du * float(c[0] - a[0]) / 2
    vy = float(b[1]) + dv * float(e[1] - b[1])
    reach = int(radius + 12)
    x0, y0 = int(vx) - reach, int(vy) - reach
    yy, xx = np.mgrid[y0:y0 + 2 * reach, x0:x0 + 2 * reach].astype(np.float32)
    r = np.hypot(xx - vx, yy - vy)
    inner = radius * 0.65
    relief = 1 + np.clip(radius - r, 0, 1) * (0.1 - 0.25 * np.clip((r - inner) / (radius - inner), 0, 1)) \
        - 0.3 * _gauss(r - radius - 2, 2.5)
    slots = (np.abs((yy - vy) % slot - slot / 2) < slot * 0.16) & (np.abs(xx - vx) < inner * 0.75) & (r < inner)
    relief -= 0.35 * slots
    shade = template.shade.copy()
    shade[y0:y0 + 2 * reach, x0:x0 + 2 * reach] *= relief
    return replace(template, shade=shade)


def builtin_template(kind: str, style: int = 0) -> MaskTemplate:
    """A drawn template of ``kind`` in ``style`` (0 plain, 1 with a valve where VALVES has one)."""
    if kind not in MASK_TYPES:
        raise ValueError(f"unknown mask type {kind!r}; choose from {', '.join(MASK_TYPES)}")
    return _builtin(kind, int(style) if kind in VALVES else 0)


@lru_cache(maxsize=None)
def _builtin(kind: str, style: int) -> MaskTemplate:
    return _with_valve(_builtin(kind, 0)) if style else _draw(kind)


# --- textures -----------------------------------------------------------------------------------

PATTERN_VARIANTS = 8  # distinct random layouts per texture; cached, so textures cost nothing per sample


@lru_cache(maxsize=256)
def texture_pattern(texture: str, variant: int = 0, shape: tuple[int, int] = (CANVAS_H, CANVAS_W),
                    factor: float = 1.0) -> np.ndarray:
    """A (H, W) float32 pattern in [0, 1] (0 = base colour, 1 = accent) for a template scaled by ``factor``.

    Periods are in full-size template pixels, so a pattern looks the same at every scale.
    Read-only: the array is shared between samples.
    """
    h, w = shape
    if texture == "solid":
        out = np.zeros(shape, np.float32)
        out.flags.writeable = False
        return out
    rng = np.random.default_rng((TEXTURES.index(texture), variant))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / factor
    period = float(rng.uniform(18, 40))
    if texture == "stripes":
        angle = float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]))
        u = xx * np.cos(angle) + yy * np.sin(angle)
        out = np.clip(np.sin(u * 2 * np.pi / period) * 3, 0, 1)
    elif texture == "checks":
        s = (np.floor(xx / period) + np.floor(yy / period)) % 2
        lines = ((xx % period) < 3) | ((yy % period) < 3)
        out = np.maximum(s * 0.6, lines * 1.0)
    elif texture in TWO_ACCENT_TEXTURES:
        return _two_patterns(texture, variant, tuple(shape), float(factor))[0]
    else:
        canvas = np.zeros((h * _SS, w * _SS), np.float32)
        full_h, full_w = h / factor, w / factor
        jitter = rng.uniform(-0.25, 0.25, size=(int(full_h / period) + 2, int(full_w / period) + 2, 2)) * period
        for i in range(jitter.shape[0]):
            for j in range(jitter.shape[1]):
                cx = ((j + 0.5 * (i % 2)) * period + jitter[i, j, 0]) * factor
                cy = (i * period + jitter[i, j, 1]) * factor
                if texture == "dots":
                    _circle(canvas, (cx, cy), period * 0.18 * factor, 1.0)
                else:  # floral: five petals around a centre
                    r = period * 0.16 * factor
                    for k in range(5):
                        t = 2 * np.pi * k / 5 + i + j
                        _circle(canvas, (cx + 1.6 * r * np.cos(t), cy + 1.6 * r * np.sin(t)), r, 1.0)
                    _circle(canvas, (cx, cy), r * 0.8, 0.45)
        out = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    out = out.astype(np.float32)
    out.flags.writeable = False
    return out


def _bands(rng: np.random.Generator, coord: np.ndarray, repeat: float, n: int) -> np.ndarray:
    """Soft-edged bands along ``coord``: ``n`` stripes of random width per ``repeat`` px."""
    out = np.zeros_like(coord)
    phase = np.mod(coord, repeat)
    for _ in range(n):
        centre, width = rng.uniform(0, repeat), rng.uniform(0.06, 0.22) * repeat
        dist = np.abs(np.mod(phase - centre + repeat / 2, repeat) - repeat / 2)
        np.maximum(out, np.clip((width / 2 - dist) + 0.5, 0, 1), out=out)
    return out


def _plaid(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Tartan: two sets of stripes crossing; where stripes cross their colours mix (woven)."""
    repeat = period * rng.uniform(2.0, 3.2)  # a 40-120 px sett: 1.5-4 cm on a face
    warp_a, weft_a = _bands(rng, xx, repeat, 2), _bands(rng, yy, repeat, 2)
    warp_b, weft_b = _bands(rng, xx + repeat / 3, repeat, 1), _bands(rng, yy + repeat / 3, repeat, 1)
    warp_b *= 1 - warp_a
    weft_b *= 1 - weft_a
    fine = (np.mod(xx + yy, 3.0) < 1.5).astype(np.float32)  # the twill's diagonal, only where threads cross
    a = 0.5 * (warp_a + weft_a)
    b = 0.5 * (warp_b + weft_b)
    a = np.clip(a + 0.15 * fine * (a > 0.2) * (a < 0.8), 0, 1)
    return a.astype(np.float32), (b * (1 - a)).astype(np.float32)


def _camo(rng: np.random.Generator, shape: tuple[int, int], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Camouflage: two layers of hard-edged blotches (a few cm across) over the base colour."""
    size = max(1.0, 22 * factor)
    first = _smooth_noise(rng, shape, size)
    second = _smooth_noise(rng, shape, size * 0.8)
    a = np.clip((first - 0.35) * 4 / max(factor, 0.25) ** 0.5, 0, 1)
    b = np.clip((second - 0.45) * 4 / max(factor, 0.25) ** 0.5, 0, 1) * (1 - a)
    return a.astype(np.float32), b.astype(np.float32)


@lru_cache(maxsize=128)
def _two_patterns(texture: str, variant: int, shape: tuple[int, int], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Both weights (accent, third colour) of a three-colour texture, drawn together; read-only."""
    rng = np.random.default_rng((TEXTURES.index(texture), variant))
    h, w = shape
    period = float(rng.uniform(18, 40))
    if texture == "plaid":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / factor
        out = _plaid(rng, xx, yy, period)
    else:
        out = _camo(rng, shape, factor)
    for layer in out:
        layer.flags.writeable = False
    return out


def second_pattern(texture: str, variant: int = 0, shape: tuple[int, int] = (CANVAS_H, CANVAS_W),
                   factor: float = 1.0) -> np.ndarray | None:
    """The third colour's (H, W) float32 weight of a three-colour texture (plaid, camo), or None.

    Drawn with ``texture_pattern``'s layout so the two fit together. Read-only.
    """
    if texture not in TWO_ACCENT_TEXTURES:
        return None
    return _two_patterns(texture, variant, tuple(shape), float(factor))[1]


def third_color(texture: str, base: tuple[int, int, int], accent: tuple[int, int, int],
                rng: np.random.Generator) -> tuple[int, int, int]:
    """The third colour of a plaid (another named colour) or camo (a dark shade of the base)."""
    if texture == "camo":
        return tuple(int(v * 0.45) for v in base)
    others = [n for n, c in COLORS.items() if c not in (base, accent)]
    return COLORS[str(rng.choice(others))]


_SCALED: dict[tuple[int, float], tuple[MaskTemplate, MaskTemplate]] = {}
_FLOAT_RGB: dict[int, tuple[MaskTemplate, np.ndarray]] = {}


def once_per_template(cache: dict, key, template: MaskTemplate, compute):
    """``compute()``, once per template object (``key``: its id, alone or with more). Templates are
    unhashable arrays, so caches key them by id; the entry keeps its template alive, so that a template
    made after another was freed can never take that id and be given the other's value."""
    entry = cache.get(key)
    if entry is None or entry[0] is not template:
        entry = cache[key] = (template, compute())
    return entry[1]


def float_rgb(template: MaskTemplate) -> np.ndarray:
    """A pack template's colours as float32 (H, W, 3), converted once per process."""
    return once_per_template(_FLOAT_RGB, id(template), template, lambda: template.rgb.astype(np.float32))


def scaled_for(template: MaskTemplate, target_width: float) -> tuple[MaskTemplate, float]:
    """The template shrunk by a power of two to 1-2x ``target_width`` (its a-c span), and the factor.

    Warping a much larger template aliases its edges and textures and costs time; levels are
    cached per process.
    """
    span = float(np.linalg.norm(template.anchors[2] - template.anchors[0]))
    level = int(np.floor(np.log2(max(span / max(target_width, 1.0), 1.0))))
    factor = 0.5 ** level
    if level == 0:
        return template, 1.0

    def shrunk() -> MaskTemplate:
        h, w = template.alpha.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))

        def shrink(a):
            return None if a is None else cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        return MaskTemplate(
            name=template.name, mask_type=template.mask_type, variant=template.variant,
            alpha=shrink(template.alpha), shade=shrink(template.shade),
            anchors=template.anchors * np.array([size[0] / w, size[1] / h]), rgb=shrink(template.rgb))
    return once_per_template(_SCALED, (id(template), factor), template, shrunk), factor


def part_color(kind: str, base: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """The colour of a solid mask's parts (a respirator's cartridges): one of the kind's ``PART_COLORS``
    other than the body's."""
    names = [n for n in PART_COLORS[kind] if COLORS[n] != base]
    return COLORS[str(rng.choice(names))]


def accent_color(base: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """A colour that contrasts with the base: light on dark, dark on light."""
    lum = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    names = [n for n, c in COLORS.items() if abs(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] - lum) > 60]
    return COLORS[str(rng.choice(names))] if names else (255 - base[0], 255 - base[1], 255 - base[2])


# --- MaskTheFace packs --------------------------------------------------------------------------

def _pack_type(name: str) -> str:
    low = name.lower()
    for kind in MASK_TYPES:
        if low.startswith(kind):
            return kind
    return "other"


def _read_masks_cfg(path: str | Path) -> tuple[Path, configparser.ConfigParser]:
    """A pack's masks.cfg (the pack's folder or the file itself), parsed: its path and content."""
    path = Path(path)
    cfg_path = path / "masks.cfg" if path.is_dir() else path
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no masks.cfg in template pack {path}")
    cfg = configparser.ConfigParser(interpolation=None)  # MaskTheFace's files have none; '%' is a file name's
    try:
        with open(cfg_path, encoding="utf-8") as text:
            cfg.read_file(text)
    except OSError as err:
        raise ValueError(f"{cfg_path}: cannot read it: {err.strerror or err}") from None
    except (configparser.Error, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(f"{cfg_path}: not a MaskTheFace masks.cfg ({first_line})") from None
    return cfg_path, cfg


def _template_sections(cfg: configparser.ConfigParser) -> list[str]:
    """The sections that describe a template; MaskTheFace's placeholder ones (empty, inpaint) carry none."""
    return [name for name in cfg.sections() if any(k.startswith("mask_") for k in cfg[name])]


def _template_image(cfg_path: Path, cfg: configparser.ConfigParser, name: str) -> Path:
    """The image file of template ``name`` (as written in masks.cfg, or beside it in templates/)."""
    root, rel = cfg_path.parent, Path(cfg[name].get("template", f"templates/{name}.png"))
    image_path = next((p for p in (root / rel, root / "templates" / rel.name) if p.is_file()), None)
    if image_path is None:
        raise FileNotFoundError(f"{cfg_path}: template image for [{name}] not found ({rel})")
    return image_path


def pack_digest(path: str | Path) -> str:
    """What a pack is, wherever it lies: the SHA-256 (hex) of its masks.cfg and of each template image it
    names, in its order (the files ``load_pack`` reads). A build records it, so a pack edited between a
    kill and the rerun, or another machine's copy that differs, is refused instead of mixed in."""
    cfg_path, cfg = _read_masks_cfg(path)
    digest = hashlib.sha256(cfg_path.read_bytes())
    for name in _template_sections(cfg):
        digest.update(b"\0" + name.encode() + b"\0" + _template_image(cfg_path, cfg, name).read_bytes())
    return digest.hexdigest()


def load_pack(path: str | Path) -> list[MaskTemplate]:
    """Templates of a MaskTheFace-format pack: ``masks.cfg`` with six anchors each + RGBA PNGs.

    The whole pack is checked here, before a build uses it: a missing or unreadable masks.cfg or
    image, bad anchors or an empty drawing raise FileNotFoundError or ValueError with one line
    naming the file and the template.
    """
    cfg_path, cfg = _read_masks_cfg(path)
    templates = []
    for name in _template_sections(cfg):
        sec = cfg[name]
        try:
            anchors = np.array([[float(v) for v in sec[f"mask_{k}"].split(",")] for k in "abcdef"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{cfg_path}: template [{name}] needs mask_a..mask_f as 'x, y': {err}") from None
        a, b, c, _, e, _ = anchors
        if not np.isfinite(anchors).all() or c[0] - a[0] < 2 or e[1] - b[1] < 2:
            raise ValueError(f"{cfg_path}: template [{name}] has unusable anchors (need mask_a left of mask_c "
                             "and mask_b above mask_e)")
        image_path = _template_image(cfg_path, cfg, name)
        rgba = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"{image_path}: expected an RGBA PNG")
        if rgba.dtype != np.uint8:
            rgba = (rgba / 257).astype(np.uint8)
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        if not rgba[..., 3].any():
            raise ValueError(f"{image_path}: template [{name}] is fully transparent")
        low = name.lower()
        variant = "left" if low.endswith("_left") else "right" if low.endswith("_right") else "front"
        templates.append(MaskTemplate(
            name=name, mask_type=_pack_type(name), variant=variant,
            alpha=(rgba[..., 3] / 255.0).astype(np.float32), shade=np.ones(rgba.shape[:2], np.float32),
            anchors=anchors, rgb=np.ascontiguousarray(rgba[..., :3])))
    if not templates:
        raise ValueError(f"{cfg_path}: no templates (sections with mask_a..mask_f and an RGBA image)")
    return templates

"""Mask templates: ``MaskTemplate``, the project's own drawn procedurally, and their scaled copies.

A template is an RGBA-like drawing of a mask plus six anchor points, in MaskTheFace's order:

    a (top left)     b (top centre, nose bridge)      c (top right)
    d (bottom left)  e (bottom centre, under the chin) f (bottom right)

``maskgen.mask`` maps these onto six points found on the face. Procedural templates carry no
colour of their own (``rgb is None``): a colour and a texture (``maskgen.textures``) are chosen per sample
and multiplied by the template's shading (pleats, seams, edge falloff). Templates of MaskTheFace-format
packs (``maskgen.packs``) keep their own pixels.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np

from .drawing import (  # noqa: F401  (MaskTemplate and the canvas: this module's API too)
    CANVAS_H,
    CANVAS_W,
    FIELD_STEP,
    SUPERSAMPLE,
    MaskTemplate,
    draw_circle,
    smooth_noise,
)
from .drawing import curve as _curve
from .drawing import fill as _fill
from .drawing import gauss as _gauss
from .drawing import line as _line
from .moved import forwarder
from .neckwear import NECK_TYPES
from .neckwear import draw as draw_neckwear

# Colours and textures moved to maskgen.textures, packs to maskgen.packs; their former names here warn for
# one release.
__getattr__ = forwarder(__name__, {
    "maskgen.textures": (
        "COLORS", "PART_COLORS", "PATTERN_VARIANTS", "TEXTURES", "TWO_ACCENT_TEXTURES", "TYPE_COLORS",
        "TYPE_TEXTURE_WEIGHTS", "accent_color", "part_color", "second_pattern", "texture_pattern", "third_color",
    ),
    "maskgen.packs": ("load_pack", "pack_digest"),
})

MASK_TYPES = ("surgical", "n95", "kn95", "cloth", "gas", "gaiter", "bandana", "sports")
# The first five types, as they were mixed before the others came (``--mask-types surgical,n95,kn95,cloth,gas``
# still mixes them so), scaled down to make room for the neck coverings (maskgen.neckwear) and sports masks.
ORIGINAL_TYPE_WEIGHTS = {"surgical": 0.35, "n95": 0.15, "kn95": 0.2, "cloth": 0.2, "gas": 0.1}
NEW_TYPE_WEIGHTS = {"gaiter": 0.08, "bandana": 0.05, "sports": 0.04}
DEFAULT_TYPE_WEIGHTS = {**{k: round(w * (1 - sum(NEW_TYPE_WEIGHTS.values())), 4)
                           for k, w in ORIGINAL_TYPE_WEIGHTS.items()}, **NEW_TYPE_WEIGHTS}

# A drawn mask's width against the face's (its sides' distance from the b-e line), drawn per sample:
# cup respirators come in sizes, and many sit well inside the cheeks; the others reach the jaw.
FIT_RANGE = {"n95": (0.74, 1.0)}

# Anchor heights as fractions of b->e, taken from MaskTheFace's surgical template so the two
# template families agree on where a/c and d/f sit on the face.
TOP_SIDE_DROP = 0.17
BOTTOM_SIDE_DROP = 0.67



def _anchors(left=40.0, right=520.0, top=50.0, bottom=400.0, side_inset=0.0, bottom_inset=10.0) -> np.ndarray:
    cx = (left + right) / 2
    ya = top + TOP_SIDE_DROP * (bottom - top)
    yd = top + BOTTOM_SIDE_DROP * (bottom - top)
    return np.array([[left + side_inset, ya], [cx, top], [right - side_inset, ya],
                     [left + bottom_inset, yd], [cx, bottom], [right - bottom_inset, yd]])


def _down(canvas: np.ndarray) -> np.ndarray:
    return cv2.resize(canvas, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA)


def _outline(kind: str, an: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = an
    if kind in ("surgical", "cloth", "sports"):
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


# How many drawn styles each kind comes in (chosen per sample, see ``choose_style``), and how often
# each appears: N95s with and without an exhalation valve, KN95s with a valve now and then.
STYLE_WEIGHTS = {"surgical": (1.0,), "n95": (0.65, 0.35), "kn95": (0.85, 0.15), "cloth": (1.0,), "gas": (1.0,),
                 "gaiter": (1.0,), "bandana": (1.0,), "sports": (1.0,)}
# A sports mask's two exhalation valves, one on each cheek: centre (fractions of the half width from the
# middle, of the height from the nose bridge) and radius in template pixels.
SPORTS_VALVES = ((-0.5, 0.56), (0.5, 0.56))
SPORTS_VALVE_RADIUS = 42.0


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
    big = (CANVAS_H * SUPERSAMPLE, CANVAS_W * SUPERSAMPLE)
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
                draw_circle(detail, b + t * (e - b) + [dx, 0], 2.0, -0.2)
    elif kind == "cloth":
        loops(6.5, 40)
    elif kind == "sports":  # neoprene: a wide strap each side, two round valves on the cheeks
        for y in (a[1] + 20, d[1] + 10):
            _cord(cords, cord_shade, np.array([[a[0] - 45, y - 6], [a[0] + 5, y]]), 10)
            _cord(cords, cord_shade, np.array([[c[0] - 5, y], [c[0] + 45, y - 6]]), 10)
        _line(detail, outline, -0.16, 5)  # the bound edge's stitching
    elif kind == "gas":
        _line(detail, outline, -0.3, 8)
        # The filter cartridges are drawn on the crop, after the warp (maskgen.cartridges).
        draw_circle(detail, (b + e) / 2 + [0, 60], 38, -0.35, thickness=5)  # exhalation valve
        draw_circle(detail, (b + e) / 2 + [0, 60], 20, -0.25)
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
        grain = 0.035 * smooth_noise(rng, (h, w), 0.7) + 0.05 * smooth_noise(rng, (h, w), 18)
    elif kind == "n95":
        relief += 0.06 * (dist < 12) - 0.14 * _gauss(dist - 12, 1.3)  # welded rim
        relief += top_band * (0.16 * _gauss(dist - 14, 3) - 0.14 * _gauss(dist - 22, 3))  # nose wire / foam
        grain = 0.05 * smooth_noise(rng, (h, w), 0.8) + 0.035 * smooth_noise(rng, (h, w), 30)
    elif kind == "kn95":
        du = xx - (bx + (yy - top) / height * (ex - bx))  # signed distance to the fold
        relief += 0.12 * _gauss(du + 2.5, 1.5) - 0.22 * _gauss(du - 1.5, 1.5)  # the fold's crest and crease
        relief += 0.05 * (dist < 10) - 0.12 * _gauss(dist - 10, 1.2)  # welded edge
        for t in np.arange(0.0, 1.0, 1 / 70):  # weld dots round the edge
            p = outline[min(len(outline) - 1, int(t * len(outline)))]
            inward = np.array([cx, (b[1] + e[1]) / 2]) - p
            draw_circle(detail, p + 9 * inward / max(np.linalg.norm(inward), 1e-6), 1.8, -0.18)
        relief += top_band * (0.12 * _gauss(dist - 16, 3) - 0.12 * _gauss(dist - 23, 3))  # nose wire
        grain = 0.03 * smooth_noise(rng, (h, w), 0.7) + 0.03 * smooth_noise(rng, (h, w), 25)
    elif kind == "cloth":
        ds = xx - (cx + 6 * np.sin(np.pi * np.clip(v, 0, 1)))  # the centre seam, bowed like the outline
        relief += 0.08 * _gauss(ds + 3, 2.5) - 0.22 * _gauss(ds - 1, 1.5)
        relief -= 0.14 * _gauss(dist - 9, 1.2) * (np.sin(xx * 0.45 + yy * 0.45) > -0.2)  # stitched hem
        period = 2 * np.pi / 4.5  # the weave: threads crossing every 4.5 px (about 1.5 mm)
        weave = np.outer(np.sin(np.arange(h, dtype=np.float32) * period),
                         np.sin(np.arange(w, dtype=np.float32) * period))
        grain = 0.035 * weave + 0.04 * smooth_noise(rng, (h, w), 0.8) + 0.08 * smooth_noise(rng, (h, w), 22)
    elif kind == "sports":
        ds = xx - (cx + 4 * np.sin(np.pi * np.clip(v, 0, 1)))  # the moulded centre seam
        relief += 0.07 * _gauss(ds + 3, 3) - 0.2 * _gauss(ds - 1, 1.8)
        relief += 0.05 * (dist < 14) - 0.14 * _gauss(dist - 14, 1.4)  # bound edge
        for du, dv in SPORTS_VALVES:  # raised valve housings: lit crown, shadowed rim, a grille of slots
            r = np.hypot(xx - (cx + du * half_w), yy - (top + dv * height))
            inside = np.clip((SPORTS_VALVE_RADIUS - r) / 2 + 0.5, 0, 1)
            crown = 0.14 * _gauss(r - 0.35 * SPORTS_VALVE_RADIUS, 0.3 * SPORTS_VALVE_RADIUS)
            slots = (np.sin((xx - cx) * 0.9) > 0.3) * (r < 0.6 * SPORTS_VALVE_RADIUS)
            # dark moulded plastic, whatever the fabric's colour: the valve reads as a part of its own
            relief *= 1 - inside * (0.55 - 1.2 * crown + 0.15 * slots)
            relief += 0.25 * _gauss(r - SPORTS_VALVE_RADIUS + 3, 1.8) - 0.3 * _gauss(r - SPORTS_VALVE_RADIUS - 3, 2.5) \
                - 0.15 * _gauss(r - 0.62 * SPORTS_VALVE_RADIUS, 1.5)
        grain = 0.03 * smooth_noise(rng, (h, w), 0.9) + 0.04 * smooth_noise(rng, (h, w), 28)
    else:  # gas: rubbery, little grain
        grain = 0.02 * smooth_noise(rng, (h, w), 1.0) + 0.03 * smooth_noise(rng, (h, w), 30)

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
    if kind in NECK_TYPES:
        return draw_neckwear(kind)
    return _with_valve(_builtin(kind, 0)) if style else _draw(kind)


# --- scaled copies, per-template caches --------------------------------------------------------------

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


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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

MASK_TYPES = ("surgical", "n95", "kn95", "cloth", "gas")
TEXTURES = ("solid", "stripes", "checks", "dots", "floral")
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
TYPE_TEXTURE_WEIGHTS = {  # solid, stripes, checks, dots, floral
    "surgical": (0.9, 0.04, 0.02, 0.02, 0.02),
    "n95": (1.0, 0, 0, 0, 0),
    "kn95": (0.8, 0.05, 0.05, 0.05, 0.05),
    "cloth": (0.3, 0.2, 0.15, 0.15, 0.2),
    "gas": (1.0, 0, 0, 0, 0),
}

# Anchor heights as fractions of b->e, taken from MaskTheFace's surgical template so the two
# template families agree on where a/c and d/f sit on the face.
TOP_SIDE_DROP = 0.17
BOTTOM_SIDE_DROP = 0.67

CANVAS_W, CANVAS_H = 560, 420  # procedural template size; warped down to the crop
_SS = 2  # supersampling for anti-aliased edges


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


def _edge_shading(alpha: np.ndarray, depth: float = 0.18) -> np.ndarray:
    """Darker towards the outline: a cheap stand-in for the mask curving away from the light."""
    inside = (alpha > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    ramp = np.clip(dist / 40.0, 0, 1)
    return (1.0 - depth + depth * np.sqrt(ramp)).astype(np.float32)


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


def _draw(kind: str) -> MaskTemplate:
    big = (CANVAS_H * _SS, CANVAS_W * _SS)
    if kind == "gas":
        an = _anchors(left=110, right=450, top=40, bottom=385)
    elif kind == "kn95":
        an = _anchors(left=40, right=520, top=40, bottom=400, bottom_inset=40)
    else:
        an = _anchors()
    a, b, c, d, e, f = an
    outline = _outline(kind, an)
    alpha = np.zeros(big, np.float32)
    _fill(alpha, outline, 1.0)
    detail = np.ones(big, np.float32)  # multiplicative shading details drawn at full size

    if kind == "surgical":
        for frac in (0.3, 0.5, 0.7):  # pleats: a dark fold line with a lit band above it
            y0 = b[1] + frac * (e[1] - b[1])
            fold = _curve([a[0] - 10, y0 + 6], [(a[0] + c[0]) / 2, y0 - 10], [c[0] + 10, y0 + 6])
            _line(detail, fold, 0.72, 3)
            _line(detail, fold - [0, 6], 1.08, 5)
        _line(detail, outline, 0.85, 8)  # bound edge
        for side in (1, -1):  # ear loops reaching towards the ears
            top_c, bot_c = (a, d) if side == 1 else (c, f)
            ear = (top_c + bot_c) / 2 + [-side * 45, 0]
            loop = np.vstack([_curve(top_c, ear + [0, -40], ear), _curve(ear, ear + [0, 40], bot_c)[1:]])
            _line(alpha, loop, 1.0, 4)
    elif kind == "n95":
        _line(detail, _curve([a[0] + 20, (a[1] + d[1]) / 2], [b[0], e[1] - 40], [c[0] - 20, (c[1] + f[1]) / 2]), 0.8, 3)
        _line(detail, outline, 0.82, 10)
        for y in (a[1] + 15, d[1] + 20):  # head straps
            _line(alpha, np.array([[a[0] - 40, y - 10], [a[0] + 5, y]]), 1.0, 6)
            _line(alpha, np.array([[c[0] - 5, y], [c[0] + 40, y - 10]]), 1.0, 6)
    elif kind == "kn95":
        _line(detail, np.array([b, e]), 0.7, 3)  # central fold
        _line(detail, outline, 0.8, 6)
        for t in np.linspace(0.1, 0.9, 9):  # welded dots along the fold
            _circle(detail, b + t * (e - b) + [6, 0], 2.2, 0.75)
    elif kind == "cloth":
        _line(detail, _curve(b, (b + e) / 2 + [6, 0], e), 0.78, 3)  # centre seam
        _line(detail, outline, 0.88, 6)
    elif kind == "gas":
        _line(detail, outline, 0.7, 8)
        for centre in (d + [-55, -30], f + [55, -30]):  # filter cartridges outside the body
            _circle(alpha, centre, 62, 1.0)
            _circle(detail, centre, 62, 0.6, thickness=6)
            _circle(detail, centre, 35, 0.8, thickness=3)
        _circle(detail, (b + e) / 2 + [0, 60], 38, 0.65, thickness=5)  # exhalation valve
        _circle(detail, (b + e) / 2 + [0, 60], 20, 0.75)

    alpha = np.clip(_down(alpha), 0, 1)
    shade = _down(detail) * _edge_shading(alpha)
    return MaskTemplate(name=kind, mask_type=kind, variant="front", alpha=alpha, shade=shade.astype(np.float32),
                        anchors=an.astype(np.float64))


@lru_cache(maxsize=None)
def builtin_template(kind: str) -> MaskTemplate:
    if kind not in MASK_TYPES:
        raise ValueError(f"unknown mask type {kind!r}; choose from {', '.join(MASK_TYPES)}")
    return _draw(kind)


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


_SCALED: dict[tuple[int, float], MaskTemplate] = {}
_FLOAT_RGB: dict[int, np.ndarray] = {}


def float_rgb(template: MaskTemplate) -> np.ndarray:
    """A pack template's colours as float32 (H, W, 3), converted once per process."""
    if id(template) not in _FLOAT_RGB:
        _FLOAT_RGB[id(template)] = template.rgb.astype(np.float32)
    return _FLOAT_RGB[id(template)]


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
    key = (id(template), factor)
    if key not in _SCALED:
        h, w = template.alpha.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        def shrink(a):
            return None if a is None else cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        _SCALED[key] = MaskTemplate(
            name=template.name, mask_type=template.mask_type, variant=template.variant,
            alpha=shrink(template.alpha), shade=shrink(template.shade),
            anchors=template.anchors * np.array([size[0] / w, size[1] / h]), rgb=shrink(template.rgb))
    return _SCALED[key], factor


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


def load_pack(path: str | Path) -> list[MaskTemplate]:
    """Templates of a MaskTheFace-format pack: ``masks.cfg`` with six anchors each + RGBA PNGs."""
    path = Path(path)
    cfg_path = path / "masks.cfg" if path.is_dir() else path
    root = cfg_path.parent
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no masks.cfg in template pack {path}")
    cfg = configparser.ConfigParser()
    cfg.read(cfg_path)
    templates = []
    for name in cfg.sections():
        sec = cfg[name]
        if not any(k.startswith("mask_") for k in sec):
            continue  # MaskTheFace's placeholder sections (empty, inpaint) carry no template
        try:
            anchors = np.array([[float(v) for v in sec[f"mask_{k}"].split(",")] for k in "abcdef"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{cfg_path}: template [{name}] needs mask_a..mask_f as 'x, y': {err}") from None
        rel = Path(sec.get("template", f"templates/{name}.png"))
        image_path = next((p for p in (root / rel, root / "templates" / rel.name) if p.is_file()), None)
        if image_path is None:
            raise FileNotFoundError(f"{cfg_path}: template image for [{name}] not found ({rel})")
        rgba = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"{image_path}: expected an RGBA PNG")
        if rgba.dtype != np.uint8:
            rgba = (rgba / 257).astype(np.uint8)
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        low = name.lower()
        variant = "left" if low.endswith("_left") else "right" if low.endswith("_right") else "front"
        templates.append(MaskTemplate(
            name=name, mask_type=_pack_type(name), variant=variant,
            alpha=(rgba[..., 3] / 255.0).astype(np.float32), shade=np.ones(rgba.shape[:2], np.float32),
            anchors=anchors, rgb=np.ascontiguousarray(rgba[..., :3])))
    if not templates:
        raise ValueError(f"{cfg_path}: no templates")
    return templates

"""Textures and colours of drawn masks: the named colours and which mask types come in them, and the
patterns (stripes, checks, dots, floral, plaid, camo, paisley) multiplied into a drawn template's colour per
sample. (Printed figures, logos and photos: ``maskgen.prints``.)"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .templates import CANVAS_H, CANVAS_W, SUPERSAMPLE, draw_circle, smooth_noise

TEXTURES = ("solid", "stripes", "checks", "dots", "floral", "plaid", "camo", "paisley")
TWO_ACCENT_TEXTURES = ("plaid", "camo")  # a third colour: see ``second_pattern``

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
    "gaiter": ("black", "navy", "grey", "dark_grey", "olive", "red", "blue", "teal", "beige", "purple"),
    "bandana": ("red", "navy", "black", "blue", "olive", "white", "purple", "teal"),
    "sports": ("black", "dark_grey", "grey", "navy", "red", "blue", "white", "olive"),
}
# Filter cartridges (maskgen.cartridges): black or grey organic-vapour cans, magenta P100 pancakes, yellow
# and olive combination cartridges; a felt pad's retainer ring takes one too (the felt has its own colours).
# A respirator's rubber body is rarely the same colour.
PART_COLORS = {"gas": ("white", "pink", "purple", "grey", "black", "yellow", "olive", "beige")}
TYPE_TEXTURE_WEIGHTS = {  # solid, stripes, checks, dots, floral, plaid, camo, paisley
    "surgical": (0.9, 0.04, 0.02, 0.02, 0.02, 0, 0, 0),
    "n95": (1.0, 0, 0, 0, 0, 0, 0, 0),
    "kn95": (0.8, 0.05, 0.05, 0.03, 0.03, 0, 0.04, 0),
    "cloth": (0.26, 0.12, 0.1, 0.12, 0.14, 0.16, 0.1, 0),
    "gas": (0.9, 0, 0, 0, 0, 0, 0.1, 0),
    "gaiter": (0.4, 0.15, 0, 0.05, 0.05, 0.05, 0.25, 0.05),
    "bandana": (0.15, 0, 0.05, 0.05, 0.05, 0.1, 0.05, 0.55),  # paisley, above all
    "sports": (0.7, 0.1, 0, 0, 0, 0, 0.2, 0),
}

PATTERN_VARIANTS = 8  # distinct random layouts per texture; cached, so textures cost nothing per sample


@lru_cache(maxsize=512)  # textures x variants x template shapes x levels: the neck coverings' shape doubles them
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
        if texture == "paisley":  # motifs a few centimetres long: three times a dot's spacing
            period *= 3
        canvas = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.float32)
        full_h, full_w = h / factor, w / factor
        jitter = rng.uniform(-0.25, 0.25, size=(int(full_h / period) + 2, int(full_w / period) + 2, 2)) * period
        for i in range(jitter.shape[0]):
            for j in range(jitter.shape[1]):
                cx = ((j + 0.5 * (i % 2)) * period + jitter[i, j, 0]) * factor
                cy = (i * period + jitter[i, j, 1]) * factor
                if texture == "dots":
                    draw_circle(canvas, (cx, cy), period * 0.18 * factor, 1.0)
                elif texture == "paisley":
                    _paisley(canvas, (cx, cy), 0.95 * period * factor, float(rng.uniform(0, 2 * np.pi)))
                else:  # floral: five petals around a centre
                    r = period * 0.16 * factor
                    for k in range(5):
                        t = 2 * np.pi * k / 5 + i + j
                        draw_circle(canvas, (cx + 1.6 * r * np.cos(t), cy + 1.6 * r * np.sin(t)), r, 1.0)
                    draw_circle(canvas, (cx, cy), r * 0.8, 0.45)
        out = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    out = out.astype(np.float32)
    out.flags.writeable = False
    return out


def _paisley(canvas: np.ndarray, centre: tuple[float, float], size: float, angle: float) -> None:
    """A paisley motif on a supersampled canvas: a teardrop (a round head, a tail curling off it) with a
    ring and a dot inside, and a few dots round it, as printed on bandanas."""
    cx, cy = centre
    ux, uy = np.cos(angle), np.sin(angle)  # towards the tail
    head = size * 0.22
    points = []  # the teardrop's outline: the head's far half, then the tail's two edges to its curled tip
    for t in np.linspace(np.pi / 2, 3 * np.pi / 2, 12):
        points.append((cx + head * (np.cos(t) * ux - np.sin(t) * -uy), cy + head * (np.cos(t) * uy + np.sin(t) * ux)))
    for s in np.linspace(0, 1, 10):
        along, curl = head + s * size * 0.45, (s ** 2) * size * 0.18
        width = head * (1 - s) ** 1.3
        points.insert(0, (cx + along * ux - (width + curl) * uy, cy + along * uy + (width + curl) * ux))
        points.append((cx + along * ux - (-width + curl) * uy, cy + along * uy + (-width + curl) * ux))
    scale = SUPERSAMPLE * 16
    pts = np.round(np.array(points) * scale).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1.0, lineType=cv2.LINE_AA, shift=4)
    draw_circle(canvas, (cx, cy), head * 0.62, 0.0)
    draw_circle(canvas, (cx, cy), head * 0.3, 1.0)
    for k in range(5):
        t = angle + np.pi * (0.6 + 0.2 * k)
        draw_circle(canvas, (cx + 1.45 * head * np.cos(t), cy + 1.45 * head * np.sin(t)), head * 0.12, 1.0)


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
    first = smooth_noise(rng, shape, size)
    second = smooth_noise(rng, shape, size * 0.8)
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


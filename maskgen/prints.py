"""Printed masks: figures, logos and photos printed on a fabric mask's front, drawn per sample.

Real cloth masks, gaiters and bandanas are often printed with more than a regular pattern: cartoon
figures all over (``figures``), one central graphic (``logo``: a word in bold letters, a badge, a big
printed smile) or a photograph across the whole front (``photo``). A print is drawn in the template's
space at the size it is warped from (so it follows the mask's warp, relief and light like the other
textures), over the mask's base colour, from a seed of its own (``Print.seed``).

A ``photo`` print is a patch of another image when one is given (``Print.photo``: the build passes
another source image, see ``maskgen.build.plan``), else a photograph-like picture made up here: smooth
colour fields with soft blobs in them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .templates import MaskTemplate, smooth_noise
from .textures import COLORS

PRINT_MODES = ("figures", "logo", "photo")
PRINT_MODE_WEIGHTS = (0.4, 0.35, 0.25)
PRINTABLE_TYPES = ("cloth", "gaiter", "bandana")  # fabric fronts that are printed on
DEFAULT_PRINT_SHARE = 0.3  # of the printable masks
# Where a central print sits, down the b-e line: the mouth, which on a neck covering's long b-e line is higher.
PRINT_CENTRE = {"gaiter": 0.2, "bandana": 0.2}
PRINT_CENTRE_DEFAULT = 0.5
# Printing inks: the named colours and a few brighter ones.
INKS = tuple(COLORS.values()) + ((250, 210, 40), (240, 120, 30), (40, 170, 80), (230, 60, 140), (250, 250, 250))
FIGURES = ("star", "heart", "smiley", "cat", "flower")
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX)
# Prints are drawn at the template level's own size with anti-aliased edges (sub-pixel coordinates), not
# supersampled: the warp smooths them further, and a print per sample must cost little.
SUPERSAMPLE = 1
PHOTO_STEP = 4  # a made-up photo is smooth: computed this much coarser, then enlarged


@dataclass(frozen=True)
class Print:
    mode: str  # one of PRINT_MODES
    seed: int
    photo: np.ndarray | None = None  # RGB uint8: a photo print is cut from it (else made up)


def choose_print(kind: str, share: float, rng: np.random.Generator) -> Print | None:
    """A print for a mask of ``kind`` on ``share`` of the printable ones, else None; draws from ``rng``
    only for printable kinds."""
    if kind not in PRINTABLE_TYPES or share <= 0.0:
        return None
    u, which, seed = float(rng.random()), float(rng.random()), int(rng.integers(2 ** 31))
    if u >= share:
        return None
    total, mode = 0.0, PRINT_MODES[-1]
    for name, weight in zip(PRINT_MODES, PRINT_MODE_WEIGHTS, strict=True):
        total += weight / sum(PRINT_MODE_WEIGHTS)
        if which < total:
            mode = name
            break
    return Print(mode, seed)


def _ink(rng: np.random.Generator, base: tuple[float, ...], min_distance: float = 90.0) -> tuple[float, ...]:
    """An ink that stands out on ``base``."""
    inks = [c for c in INKS if np.linalg.norm(np.subtract(c, base)) > min_distance] or list(INKS)
    return tuple(float(v) for v in inks[int(rng.integers(len(inks)))])


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * SUPERSAMPLE * 16).astype(np.int32)


def _figure(canvas: np.ndarray, name: str, centre, size: float, angle: float, ink, rng: np.random.Generator,
            base) -> None:
    """One cartoon figure, ``size`` across, on a supersampled colour canvas."""
    cx, cy = centre
    r = size / 2
    line = cv2.LINE_AA

    def disc(x, y, radius, colour, thickness=-1):
        cv2.circle(canvas, tuple(int(round(v * SUPERSAMPLE * 16)) for v in (x, y)),
                   int(round(radius * SUPERSAMPLE * 16)), colour, thickness if thickness < 0 else
                   max(1, int(thickness * SUPERSAMPLE)), line, 4)

    dark = (30.0, 28.0, 30.0)
    if name == "star":
        t = angle + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        cv2.fillPoly(canvas, [_pts(np.stack([cx + radius * np.sin(t), cy - radius * np.cos(t)], 1))], ink, line, 4)
    elif name == "heart":
        disc(cx - r * 0.45, cy - r * 0.2, r * 0.52, ink)
        disc(cx + r * 0.45, cy - r * 0.2, r * 0.52, ink)
        cv2.fillPoly(canvas, [_pts([[cx - r * 0.95, cy - r * 0.05], [cx + r * 0.95, cy - r * 0.05],
                                    [cx, cy + r * 0.95]])], ink, line, 4)
    elif name == "smiley":
        disc(cx, cy, r, (250.0, 210.0, 40.0))
        disc(cx - r * 0.35, cy - r * 0.25, r * 0.12, dark)
        disc(cx + r * 0.35, cy - r * 0.25, r * 0.12, dark)
        arc = [[cx + r * 0.55 * np.cos(t), cy + r * 0.55 * np.sin(t)] for t in np.linspace(0.3, np.pi - 0.3, 12)]
        cv2.polylines(canvas, [_pts(arc)], False, dark, max(1, int(r * 0.12 * SUPERSAMPLE)), line, 4)
    elif name == "cat":
        cv2.fillPoly(canvas, [_pts([[cx - r * 0.85, cy - r * 0.2], [cx - r * 0.7, cy - r * 1.05],
                                    [cx - r * 0.15, cy - r * 0.6]])], ink, line, 4)
        cv2.fillPoly(canvas, [_pts([[cx + r * 0.85, cy - r * 0.2], [cx + r * 0.7, cy - r * 1.05],
                                    [cx + r * 0.15, cy - r * 0.6]])], ink, line, 4)
        disc(cx, cy, r * 0.8, ink)
        eye = (250.0, 250.0, 250.0) if np.mean(ink) < 128 else dark
        disc(cx - r * 0.3, cy - r * 0.1, r * 0.13, eye)
        disc(cx + r * 0.3, cy - r * 0.1, r * 0.13, eye)
        disc(cx, cy + r * 0.2, r * 0.08, eye)
    else:  # flower: petals round a centre of another ink
        for k in range(6):
            t = angle + k * np.pi / 3
            disc(cx + r * 0.55 * np.cos(t), cy + r * 0.55 * np.sin(t), r * 0.4, ink)
        disc(cx, cy, r * 0.35, _ink(rng, ink))


def _figures(canvas: np.ndarray, rng: np.random.Generator, base, factor: float) -> None:
    h, w = canvas.shape[0] / SUPERSAMPLE, canvas.shape[1] / SUPERSAMPLE
    spacing = float(rng.uniform(70, 120)) * factor
    names = [FIGURES[int(i)] for i in rng.choice(len(FIGURES), size=int(rng.integers(1, 4)), replace=False)]
    inks = [_ink(rng, base) for _ in range(3)]
    rows, cols = int(h / spacing) + 2, int(w / spacing) + 2
    for i in range(rows):
        for j in range(cols):
            x = (j + 0.5 * (i % 2) + rng.uniform(-0.15, 0.15)) * spacing
            y = (i + rng.uniform(-0.15, 0.15)) * spacing
            name = names[int(rng.integers(len(names)))]
            _figure(canvas, name, (x, y), spacing * rng.uniform(0.45, 0.65), float(rng.uniform(-0.5, 0.5)),
                    inks[int(rng.integers(len(inks)))], rng, base)


def _logo(canvas: np.ndarray, rng: np.random.Generator, base, centre, width: float) -> None:
    """One central graphic about ``width`` across: a word, a badge or a printed smile."""
    cx, cy = centre
    ink = _ink(rng, base)
    style = int(rng.integers(3))
    if style == 0:  # a word in bold letters
        text = "".join(LETTERS[int(i)] for i in rng.integers(len(LETTERS), size=int(rng.integers(2, 6))))
        font = FONTS[int(rng.integers(len(FONTS)))]
        thickness = 3
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
        scale = width * SUPERSAMPLE / max(tw, 1)
        thick = max(1, int(round(thickness * scale)))
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
        org = (int(cx * SUPERSAMPLE - tw / 2), int(cy * SUPERSAMPLE + th / 2))
        letters = np.zeros(canvas.shape[:2], np.uint8)  # putText draws on 8-bit images only
        cv2.putText(letters, text, org, font, scale, 255, thick, cv2.LINE_AA)
        weight = (letters.astype(np.float32) / 255)[..., None]
        canvas *= 1 - weight
        canvas += weight * np.asarray(ink, np.float32)
    elif style == 1:  # a badge: a ring with a figure in it
        r = width * 0.42
        _figure(canvas, "star" if rng.random() < 0.5 else "heart", centre, r * 1.2, 0.0, ink, rng, base)
        cv2.circle(canvas, tuple(int(round(v * SUPERSAMPLE * 16)) for v in centre), int(round(r * SUPERSAMPLE * 16)),
                   ink, max(1, int(r * 0.12 * SUPERSAMPLE)), cv2.LINE_AA, 4)
    else:  # a printed smile: red lips round white teeth
        r = width * 0.5
        top = [[cx + r * np.cos(t), cy - r * 0.15 + r * 0.25 * np.sin(t)] for t in np.linspace(np.pi, 0, 16)]
        bottom = [[cx + r * np.cos(t), cy - r * 0.15 + r * 0.7 * np.sin(t)] for t in np.linspace(0, np.pi, 16)]
        cv2.fillPoly(canvas, [_pts(top + bottom)], (190.0, 40.0, 50.0), cv2.LINE_AA, 4)
        ts = np.linspace(np.pi, 0, 16)
        inner_top = [[cx + r * 0.8 * np.cos(t), cy - r * 0.05 + r * 0.12 * np.sin(t)] for t in ts]
        inner_bottom = [[cx + r * 0.8 * np.cos(t), cy - r * 0.05 + r * 0.45 * np.sin(t)] for t in ts[::-1]]
        cv2.fillPoly(canvas, [_pts(inner_top + inner_bottom)], (245.0, 245.0, 240.0), cv2.LINE_AA, 4)
        for k in range(1, 6):  # the gaps between teeth
            x = cx - r * 0.8 + k * r * 1.6 / 6
            cv2.polylines(canvas, [_pts([[x, cy - r * 0.1], [x, cy + r * 0.15]])], False, (150.0, 140.0, 140.0),
                          max(1, int(r * 0.04 * SUPERSAMPLE)), cv2.LINE_AA, 4)


def _made_up_photo(rng: np.random.Generator, shape: tuple[int, int], factor: float) -> np.ndarray:
    """A photograph-like picture (float32 RGB): smooth colour fields with soft blobs of other colours."""
    full = shape
    shape = (max(2, shape[0] // PHOTO_STEP), max(2, shape[1] // PHOTO_STEP))
    factor = factor / PHOTO_STEP
    h, w = shape
    colours = np.array([INKS[int(i)] for i in rng.integers(len(INKS), size=4)], np.float32)
    weights = np.stack([smooth_noise(rng, shape, max(2.0, 40 * factor)) for _ in range(3)], -1)
    weights = np.exp(1.5 * weights)
    weights /= weights.sum(-1, keepdims=True)
    out = weights @ colours[:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):  # blobs: things in the picture
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        blob = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) ** 2)[..., None]
        out = out * (1 - blob) + blob * np.asarray(INKS[int(rng.integers(len(INKS)))], np.float32)
    out *= (1 + 0.08 * smooth_noise(rng, shape, 1.0))[..., None]  # the picture's detail
    return cv2.resize(out.astype(np.float32), (full[1], full[0]), interpolation=cv2.INTER_LINEAR)


def _photo_patch(photo: np.ndarray, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A patch of ``photo`` (a third to all of it, anywhere) stretched to ``shape``, float32 RGB."""
    ph, pw = photo.shape[:2]
    scale = float(rng.uniform(0.35, 1.0))
    ch, cw = min(ph, max(2, int(ph * scale))), min(pw, max(2, int(pw * scale)))  # a 1-px image: all of it
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    patch = photo[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(patch, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32)


def draw_print(art: Print, base: tuple[float, float, float], template: MaskTemplate, factor: float) -> np.ndarray:
    """The print on the mask's ``base`` colour over ``template`` (a scaled level, ``factor`` of full size):
    (H, W, 3) float32 colours, 0-255."""
    rng = np.random.default_rng(art.seed)
    h, w = template.alpha.shape
    a, b, c, _, e, _ = template.anchors
    if art.mode == "photo":
        # Across the front, from the nose bridge to the bottom; a print on the fabric, edges and all.
        y0, y1 = int(max(0, b[1] - 0.1 * (e[1] - b[1]))), h
        picture = _photo_patch(art.photo, rng, (y1 - y0, w)) if art.photo is not None \
            else _made_up_photo(rng, (y1 - y0, w), factor)
        out = np.empty((h, w, 3), np.float32)
        out[:] = base
        out[y0:] = picture
        return out
    canvas = np.empty((h * SUPERSAMPLE, w * SUPERSAMPLE, 3), np.float32)
    canvas[:] = base
    if art.mode == "figures":
        _figures(canvas, rng, base, factor)
    else:
        along = PRINT_CENTRE.get(template.mask_type, PRINT_CENTRE_DEFAULT)
        centre = b + along * (e - b)
        width = float(rng.uniform(0.35, 0.6)) * float(c[0] - a[0])
        _logo(canvas, rng, base, (float(centre[0]), float(centre[1])), width)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)

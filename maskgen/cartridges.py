"""A respirator's filter cartridges, drawn on the crop after the facepiece is warped onto the face.

Drawn in template space, cartridges were warped with the facepiece into flat ellipses inside the
face's outline. Real ones (and the respirators of MaskTheFace's pack) are round, half as wide as the
face, and stand out past the cheeks over the background, below the cheekbones. So they are drawn
here, in crop pixels: one part beside each side of the facepiece (anchors a-d and c-f), sized by the
face, narrower on the side turned away.

Two styles, as respirators are worn: moulded canisters (domed, with a darker rim and a grille ring,
in the part colour) and filter pads in their retainers (bigger, lower and further out, flat white to
cream or grey felt with a fibrous grain, held by a thin ring in the part colour). Both cover the
facepiece's side where they overlap it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Style:
    radius: tuple[float, float]  # the part's height / 2, of the a-c span (the face's width at the cheekbones)
    squash: tuple[float, float]  # its width / height: parts face forward and a little outwards
    down: tuple[float, float]  # the centre's place down the side: 0 at a (c), 1 at d (f)
    outset: tuple[float, float]  # the centre beyond the side line a-d (c-f), of the a-c span


CANISTER = Style(radius=(0.21, 0.30), squash=(0.72, 0.95), down=(0.45, 0.85), outset=(-0.02, 0.10))
# Pads (e.g. 3M 5N11 in 501 retainers) are larger discs worn lower and further out: the largest reach
# well below and beyond any canister, past the jaw and the cheeks.
PAD = Style(radius=(0.30, 0.48), squash=(0.80, 1.02), down=(0.65, 1.0), outset=(0.04, 0.24))
PAD_SHARE = 0.4  # of respirators; canisters are the rest
# Pads are white felt that ages to cream and grey: a blend from white towards one of these.
PAD_WHITE = (238, 238, 234)
PAD_TINTS = ((214, 200, 172), (176, 176, 178))
TURN_LIMITS = (0.55, 1.35)  # the width scale of one side's part when the face is turned


@dataclass(frozen=True)
class Cartridge:
    centre: np.ndarray  # (2,) crop pixels
    half_axes: tuple[float, float]  # (across, along the side) in crop pixels
    angle: float  # radians: the direction of "across" (the face's a -> c direction; the discs are symmetric)
    pad: bool = False  # a filter pad (felt in a retainer) rather than a moulded canister
    colour: tuple[float, float, float] | None = None  # a pad's felt (sample_cartridges always sets it)
    grain_seed: int = 0  # the felt's grain (pads)


def _between(limits: tuple[float, float], u: float) -> float:
    return limits[0] + (limits[1] - limits[0]) * u


def sample_cartridges(anchors: np.ndarray, rng: np.random.Generator) -> list[Cartridge]:
    """Two cartridges for a facepiece on ``anchors`` (a..f, crop pixels); a fixed number of draws."""
    a, b, c, d, _, f = np.asarray(anchors, np.float64)
    span = float(np.linalg.norm(c - a))
    across = (c - a) / max(span, 1e-9)
    u_style, u_radius, u_squash, u_down, u_out, u_tint, u_which = rng.random(7).tolist()
    grain_seed = int(rng.integers(2 ** 31))
    pad = u_style < PAD_SHARE
    style = PAD if pad else CANISTER
    radius = span * _between(style.radius, u_radius)
    squash = _between(style.squash, u_squash)
    down = _between(style.down, u_down)
    outset = span * _between(style.outset, u_out)
    colour = None
    if pad:
        tint = PAD_TINTS[int(u_which * len(PAD_TINTS))]
        colour = tuple(w + 0.6 * u_tint * (t - w) for w, t in zip(PAD_WHITE, tint, strict=True))
    # A turned face shows one half of the facepiece narrower: its cartridge is foreshortened alike.
    left_half, right_half = float(np.linalg.norm(b - a)), float(np.linalg.norm(c - b))
    out = []
    for top, bottom, half, sign in ((a, d, left_half, -1.0), (c, f, right_half, 1.0)):
        turn = float(np.clip(2 * half / max(left_half + right_half, 1e-9), *TURN_LIMITS))
        centre = top + down * (bottom - top) + sign * outset * turn * across
        angle = float(np.arctan2(across[1], across[0]))
        out.append(Cartridge(centre, (radius * squash * turn, radius), angle, pad, colour, grain_seed))
    return out


def _footprint(part: Cartridge, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    reach = max(part.half_axes) + 2
    x0, y0 = (int(np.floor(v - reach)) for v in part.centre)
    x1, y1 = (int(np.ceil(v + reach)) + 1 for v in part.centre)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _grain(seed: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Felt: white noise blurred by ``sigma`` px, unit standard deviation (float32)."""
    noise = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _draw(part: Cartridge, box: tuple[int, int, int, int], part_colour: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, rgb) of one cartridge over ``box``: alpha anti-aliased over about a pixel."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - np.float32(part.centre[0]), yy - np.float32(part.centre[1])
    cos, sin = np.float32(np.cos(part.angle)), np.float32(np.sin(part.angle))
    rx, ry = part.half_axes
    u = (dx * cos + dy * sin) / np.float32(rx)  # across, -1 .. 1
    v = (-dx * sin + dy * cos) / np.float32(ry)  # along the side (down), -1 .. 1
    rho = np.sqrt(u * u + v * v)
    alpha = np.clip((1 - rho) * np.float32(min(rx, ry)) + 0.5, 0, 1).astype(np.float32)
    dome = np.sqrt(np.clip(1 - rho * rho, 0, 1))
    if not part.pad:
        highlight = np.exp(-((u + 0.3) ** 2 + (v + 0.35) ** 2) / 0.12)  # lit from above, a moulded sheen
        rim = np.clip((rho - 0.86) / 0.14, 0, 1)  # the housing's edge turning away
        grille = np.exp(-((rho - 0.62) / 0.05) ** 2)  # the grille's ring
        shade = 0.72 + 0.22 * dome + 0.16 * highlight - 0.22 * rim - 0.18 * grille
        return alpha, (shade[..., None] * part_colour).astype(np.float32)
    # A pad: flat felt, a little convex, fibrous at a pixel's scale, lighter where it bulges, held at
    # its edge by a thin retainer ring in the part colour.
    ring = np.clip((rho - 0.88) / 0.03, 0, 1)
    fibres = 0.035 * _grain(part.grain_seed, rho.shape, 0.6) + 0.02 * _grain(part.grain_seed + 1, rho.shape, 2.5)
    felt = 0.84 + 0.12 * dome + 0.05 * np.exp(-((u + 0.25) ** 2 + (v + 0.3) ** 2) / 0.2) \
        - 0.12 * np.clip((rho - 0.7) / 0.18, 0, 1) + fibres
    rim = 0.75 + 0.2 * np.exp(-((rho - 0.94) / 0.025) ** 2)
    felt_colour = part_colour if part.colour is None else np.asarray(part.colour, np.float32)
    felt_rgb = felt[..., None] * felt_colour
    rgb = (1 - ring[..., None]) * felt_rgb + ring[..., None] * (rim[..., None] * part_colour)
    return alpha, rgb.astype(np.float32)


def add_cartridges(rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], anchors: np.ndarray,
                   colour: tuple[float, float, float], shape: tuple[int, int], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The warped facepiece (``rgb`` float32 H x W x 3 and ``alpha`` over ``box``) with two cartridges
    on top (canisters of ``colour``, or pads held by rings of it); the box grows to hold them (within
    the crop of ``shape``)."""
    parts = sample_cartridges(anchors, rng)
    feet = [_footprint(p, shape) for p in parts]
    boxes = [box] + [f for f in feet if f is not None]
    ux0, uy0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    ux1, uy1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    out_rgb = np.zeros((uy1 - uy0, ux1 - ux0, 3), np.float32)
    out_alpha = np.zeros((uy1 - uy0, ux1 - ux0), np.float32)
    x0, y0, x1, y1 = box
    out_rgb[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] = rgb
    out_alpha[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] = alpha
    tint = np.asarray(colour, np.float32)
    for part, foot in zip(parts, feet, strict=True):
        if foot is None:
            continue
        px0, py0, px1, py1 = foot
        part_alpha, part_rgb = _draw(part, foot, tint)
        region = (slice(py0 - uy0, py1 - uy0), slice(px0 - ux0, px1 - ux0))
        under_alpha, under_rgb = out_alpha[region], out_rgb[region]
        # "over" on unpremultiplied colours: where the facepiece is absent its colour does not count.
        # Both styles go in front of the facepiece's side: the part hides the head straps, which pass behind it.
        new_alpha = part_alpha + (1 - part_alpha) * under_alpha
        weight = np.where(new_alpha > 0, part_alpha / np.maximum(new_alpha, 1e-6), 0)[..., None]
        out_rgb[region] = weight * part_rgb + (1 - weight) * under_rgb
        out_alpha[region] = new_alpha
    return out_rgb, out_alpha, (ux0, uy0, ux1, uy1)

"""A respirator's filter cartridges, drawn on the crop after the facepiece is warped onto the face.

Drawn in template space, cartridges were warped with the facepiece into flat ellipses inside the
face's outline. Real ones (and the respirators of MaskTheFace's pack) are round, half as wide as the
face, and stand out past the cheeks over the background, below the cheekbones. So they are drawn
here, in crop pixels: one disc beside each side of the facepiece (anchors a-d and c-f), sized by the
face, narrower on the side turned away, in the part colour, with a domed shading, a darker rim and
a grille ring. They cover the facepiece's side where they overlap it, like the real parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RADIUS = (0.21, 0.30)  # the disc's height / 2, of the a-c span (the face's width at the cheekbones)
SQUASH = (0.72, 0.95)  # the disc's width / height: cartridges face forward and a little outwards
DOWN = (0.45, 0.85)  # the centre's place down the side: 0 at a (c), 1 at d (f)
OUTSET = (-0.02, 0.10)  # the centre beyond the side line a-d (c-f), of the a-c span
TURN_LIMITS = (0.55, 1.35)  # the width scale of one side's cartridge when the face is turned


@dataclass(frozen=True)
class Cartridge:
    centre: np.ndarray  # (2,) crop pixels
    half_axes: tuple[float, float]  # (across, along the side) in crop pixels
    angle: float  # radians: the direction of "across" (the face's a -> c direction; the discs are symmetric)


def sample_cartridges(anchors: np.ndarray, rng: np.random.Generator) -> list[Cartridge]:
    """Two cartridges for a facepiece on ``anchors`` (a..f, crop pixels); a fixed number of draws."""
    a, b, c, d, _, f = np.asarray(anchors, np.float64)
    span = float(np.linalg.norm(c - a))
    across = (c - a) / max(span, 1e-9)
    u_radius, u_squash, u_down, u_out = rng.random(4).tolist()
    radius = span * (RADIUS[0] + (RADIUS[1] - RADIUS[0]) * u_radius)
    squash = SQUASH[0] + (SQUASH[1] - SQUASH[0]) * u_squash
    down = DOWN[0] + (DOWN[1] - DOWN[0]) * u_down
    outset = span * (OUTSET[0] + (OUTSET[1] - OUTSET[0]) * u_out)
    # A turned face shows one half of the facepiece narrower: its cartridge is foreshortened alike.
    left_half, right_half = float(np.linalg.norm(b - a)), float(np.linalg.norm(c - b))
    out = []
    for top, bottom, half, sign in ((a, d, left_half, -1.0), (c, f, right_half, 1.0)):
        turn = float(np.clip(2 * half / max(left_half + right_half, 1e-9), *TURN_LIMITS))
        centre = top + down * (bottom - top) + sign * outset * turn * across
        angle = float(np.arctan2(across[1], across[0]))
        out.append(Cartridge(centre, (radius * squash * turn, radius), angle))
    return out


def _footprint(part: Cartridge, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    reach = max(part.half_axes) + 2
    x0, y0 = (int(np.floor(v - reach)) for v in part.centre)
    x1, y1 = (int(np.ceil(v + reach)) + 1 for v in part.centre)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _draw(part: Cartridge, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, shade) of one cartridge over ``box``: alpha anti-aliased over about a pixel."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - np.float32(part.centre[0]), yy - np.float32(part.centre[1])
    cos, sin = np.float32(np.cos(part.angle)), np.float32(np.sin(part.angle))
    rx, ry = part.half_axes
    u = (dx * cos + dy * sin) / np.float32(rx)  # across, -1 .. 1
    v = (-dx * sin + dy * cos) / np.float32(ry)  # along the side (down), -1 .. 1
    rho = np.sqrt(u * u + v * v)
    alpha = np.clip((1 - rho) * np.float32(min(rx, ry)) + 0.5, 0, 1)
    dome = np.sqrt(np.clip(1 - rho * rho, 0, 1))
    highlight = np.exp(-((u + 0.3) ** 2 + (v + 0.35) ** 2) / 0.12)  # lit from above, a moulded sheen
    rim = np.clip((rho - 0.86) / 0.14, 0, 1)  # the housing's edge turning away
    grille = np.exp(-((rho - 0.62) / 0.05) ** 2)  # the grille's ring
    shade = 0.72 + 0.22 * dome + 0.16 * highlight - 0.22 * rim - 0.18 * grille
    return alpha.astype(np.float32), shade.astype(np.float32)


def add_cartridges(rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], anchors: np.ndarray,
                   colour: tuple[float, float, float], shape: tuple[int, int], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The warped facepiece (``rgb`` float32 H x W x 3 and ``alpha`` over ``box``) with two cartridges
    of ``colour`` on top; the box grows to hold them (within the crop of ``shape``)."""
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
    for part, foot in zip(parts, feet):
        if foot is None:
            continue
        px0, py0, px1, py1 = foot
        part_alpha, shade = _draw(part, foot)
        region = (slice(py0 - uy0, py1 - uy0), slice(px0 - ux0, px1 - ux0))
        under_alpha, under_rgb = out_alpha[region], out_rgb[region]
        # "over" on unpremultiplied colours: where the facepiece is absent its colour does not count
        new_alpha = part_alpha + (1 - part_alpha) * under_alpha
        weight = np.where(new_alpha > 0, part_alpha / np.maximum(new_alpha, 1e-6), 0)[..., None]
        out_rgb[region] = weight * (shade[..., None] * tint) + (1 - weight) * under_rgb
        out_alpha[region] = new_alpha
    return out_rgb, out_alpha, (ux0, uy0, ux1, uy1)

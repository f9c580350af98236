"""Neck gaiters and bandanas: face coverings that run from the nose down past the jaw over the neck.

Their templates are taller than the other masks' (``NECK_CANVAS_H``): anchors a, b, c sit at the top as
usual (cheeks, nose bridge), but d, e, f sit at the template's bottom, and on the face they are pushed
below the crop's bottom edge (``reach_neck``), so the warp carries the fabric past the jaw and off the
crop. Each half of the warp (a-b-e-d, b-c-f-e) stays a proper quad, as for the other masks.

- **gaiter**: a knit tube pulled up over the nose: a rolled top edge, sides that run down from the
  cheeks and narrow to the neck, horizontal bunching folds and a shadow where it leaves the chin;
- **bandana**: a triangle of cotton folded along its top edge and tied behind the head: the top
  edge across the nose, the sides hanging along the jaw to a point below the chin, a stitched hem and
  creases running from the knots.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import drawing

NECK_TYPES = ("gaiter", "bandana")
NECK_CANVAS_H = 700  # template height (the width is templates.CANVAS_W)
NECK_TOP, NECK_BOTTOM = 40.0, 660.0  # b's height, and d/e/f's, in the template
NECK_SIDE_DROP = 0.1  # a and c below b, of b->d/e/f (the face's a/c drop, 0.17 of b->chin, over the longer span)
NECK_INSET = 0.12  # d and f inside a and c, of the a-c span: a neck is narrower than the face at the cheeks
NECK_OVERHANG = 0.04  # d, e, f this far below the crop's bottom edge (of the crop's size)
MIN_NECK_DROP = 0.2  # ... and at least this far below the face's e, of b->e (a face low in the crop)


def reach_neck(anchors: np.ndarray, res: int) -> np.ndarray:
    """Face anchors (a..f) for a neck covering: d, e, f moved straight down below the crop's bottom edge,
    d and f ``NECK_INSET`` inside a and c (the neck), e under the face's e."""
    anchors = np.array(anchors, np.float64)
    a, b, c, _, e, _ = anchors
    bottom = max(res * (1.0 + NECK_OVERHANG), float(e[1]) + MIN_NECK_DROP * float(np.linalg.norm(e - b)))
    inset = NECK_INSET * (c[0] - a[0])
    anchors[3] = (a[0] + inset, bottom)
    anchors[4] = (e[0], bottom)
    anchors[5] = (c[0] - inset, bottom)
    return anchors


def _template_anchors() -> np.ndarray:
    left, right = 40.0, float(drawing.CANVAS_W) - 40.0
    cx = (left + right) / 2
    ya = NECK_TOP + NECK_SIDE_DROP * (NECK_BOTTOM - NECK_TOP)
    inset = NECK_INSET * (right - left)
    return np.array([[left, ya], [cx, NECK_TOP], [right, ya],
                     [left + inset, NECK_BOTTOM], [cx, NECK_BOTTOM], [right - inset, NECK_BOTTOM]])


def _down(canvas: np.ndarray) -> np.ndarray:
    return cv2.resize(canvas, (drawing.CANVAS_W, NECK_CANVAS_H), interpolation=cv2.INTER_AREA)


def _side(top: np.ndarray, sign: float, flare: float) -> np.ndarray:
    """One side of a gaiter, from its top corner down to past the template's bottom: down the cheek, in
    to the neck under the jaw, straight down the neck (``sign`` -1 left, 1 right)."""
    x, y = float(top[0]), float(top[1])
    neck_x = x - sign * NECK_INSET * (drawing.CANVAS_W - 80.0)
    jaw_y = y + 0.3 * (NECK_BOTTOM - NECK_TOP)
    neck_y = y + 0.72 * (NECK_BOTTOM - NECK_TOP)
    corner = drawing.curve((x - sign * 14, y - 6), (x + sign * 2, y - 2), (x + sign * 4, y + 16), 6)  # rounded
    cheek = drawing.curve((x + sign * 4, y + 16), (x + sign * 8, (y + jaw_y) / 2), (x, jaw_y), 16)[1:]
    under_jaw = drawing.curve((x, jaw_y), (x - sign * 0.2 * NECK_INSET * 480, neck_y - 40), (neck_x, neck_y), 16)[1:]
    neck = np.array([[neck_x + sign * flare * 0.5, NECK_BOTTOM], [neck_x + sign * flare, NECK_CANVAS_H + 10.0]])
    return np.vstack([corner, cheek, under_jaw, neck])


def _outline(kind: str, an: np.ndarray) -> np.ndarray:
    a, b, c = an[0], an[1], an[2]
    if kind == "gaiter":  # the top held up by the nose, sagging a little towards the cheeks
        a, c = a + [14, 6], c - [14, -6]  # the rounded corners start a little inside
        top = np.vstack([drawing.curve(a, (a + b) / 2 + [0, -14], b), drawing.curve(b, (b + c) / 2 + [0, -14], c)[1:]])
        right, left = _side(c + [14, -6], 1.0, 10.0), _side(a - [14, 6], -1.0, 10.0)[::-1]
        return np.vstack([top, right, left])
    # bandana: the folded top edge straight across, the sides down the jaw to a point below the chin
    top = np.vstack([drawing.curve(a, (a + b) / 2 + [0, -6], b), drawing.curve(b, (b + c) / 2 + [0, -6], c)[1:]])
    jaw_y = a[1] + 0.3 * (NECK_BOTTOM - NECK_TOP)
    tip = np.array([b[0], NECK_CANVAS_H - 4.0])
    right = np.vstack([drawing.curve(c, (c[0] + 8, (c[1] + jaw_y) / 2), (c[0] - 6, jaw_y), 16),
                       drawing.curve((c[0] - 6, jaw_y), (c[0] - 60, NECK_BOTTOM - 120), tip + [14, -10], 24)[1:],
                       drawing.curve(tip + [14, -10], tip, tip - [14, 10], 8)[1:]])
    left = np.vstack([drawing.curve(tip - [14, 10], (a[0] + 60, NECK_BOTTOM - 120), (a[0] + 6, jaw_y), 24)[1:],
                      drawing.curve((a[0] + 6, jaw_y), (a[0] - 8, (a[1] + jaw_y) / 2), a, 16)[1:]])
    return np.vstack([top, right, left])


def draw(kind: str) -> drawing.MaskTemplate:
    """A gaiter's or a bandana's template (alpha and shading), drawn once per process."""
    an = _template_anchors()
    a, b, c = an[0], an[1], an[2]
    w, h = drawing.CANVAS_W, NECK_CANVAS_H
    big = (h * drawing.SUPERSAMPLE, w * drawing.SUPERSAMPLE)
    outline = _outline(kind, an)
    body_big = np.zeros(big, np.float32)
    drawing.fill(body_big, outline, 1.0)
    detail = np.zeros(big, np.float32)
    rng = np.random.default_rng((5 + NECK_TYPES.index(kind), 15))  # their places in MASK_TYPES
    cx, half_w, span = float(b[0]), float(c[0] - a[0]) / 2, NECK_BOTTOM - NECK_TOP
    if kind == "bandana":  # a stitched hem along the hanging edges, set in from the cut edge
        drawing.line(detail, outline[len(outline) // 3:] * [1, 1], -0.12, 2.0)
    body = np.clip(_down(body_big), 0, 1)
    # The smooth fields are computed on a grid FIELD_STEP times coarser and interpolated, as for the other
    # templates (templates._draw); xx, yy are in full-size pixels.
    step = drawing.FIELD_STEP
    gh, gw = h // step, w // step
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32) * step + (step - 1) / 2
    u = (xx - cx) / half_w
    v = (yy - float(b[1])) / span  # 0 at the nose bridge, 1 at the bottom anchors
    dist = cv2.resize(cv2.distanceTransform((body > 0.5).astype(np.uint8), cv2.DIST_L2, 5), (gw, gh),
                      interpolation=cv2.INTER_AREA)
    au = np.minimum(np.abs(u), 1.2)
    gauss = drawing.gauss
    chin = 0.62  # where the fabric leaves the chin, of b->bottom (on aligned crops the chin sits at ~0.55-0.7)
    if kind == "gaiter":
        # A tube: darker as it turns away at the sides; over the face it follows the cheeks, below the
        # chin it hangs in a shadowed hollow and bunches in horizontal folds sagging at the middle.
        form = 1.0 - 0.4 * au ** 2.2 + 0.06 * gauss(v - 0.2, 0.15) * gauss(u, 0.5)
        sag = 0.06 * (1 - np.clip(u, -1, 1) ** 2)
        form -= 0.3 * gauss(v - chin - 0.05 - sag, 0.05) * np.clip(1.2 - au, 0, 1)  # hanging off the chin
        relief = np.ones_like(form)
        # Bunching: soft ripples over the face, deeper folds below the chin (a lit crest over a shadowed
        # trough, sagging at the middle where the tube hangs).
        for depth in np.concatenate([rng.uniform(0.1, chin, 3), rng.uniform(chin + 0.05, 1.05, 5)]):
            t = v - depth - sag * rng.uniform(0.6, 1.4)
            strength = 0.6 if depth < chin else 1.0
            relief += strength * (0.12 * gauss(t + 0.014, 0.012) - 0.2 * gauss(t - 0.012, 0.014))
        relief += 0.1 * gauss(dist - 5, 3.0) * (v < 0.2) - 0.14 * gauss(dist - 13, 2.5) * (v < 0.2)  # rolled top
        grain = 0.05 * drawing.smooth_noise(rng, (h, w), 0.7) + 0.06 * drawing.smooth_noise(rng, (h, w), 26)
        ribs = 0.03 * np.sin(np.arange(w, dtype=np.float32) * (2 * np.pi / 3.5))  # knit ribs, about 1 mm
        grain = grain + ribs[None, :]
    else:
        form = 1.0 - 0.28 * au ** 2.4 - 0.12 * np.clip(v - 0.6, 0, 1)
        form -= 0.12 * gauss(v - chin - 0.04, 0.07) * np.clip(1.1 - au, 0, 1)  # hanging off the chin
        relief = np.ones_like(form)
        relief += 0.12 * gauss(dist - 3, 2.0) * (v < 0.12) - 0.1 * gauss(dist - 8, 2.0) * (v < 0.12)  # the fold
        for side in (-1.0, 1.0):  # creases from the knots at the sides, fanning down towards the point
            for angle in rng.uniform(0.35, 0.95, 3):
                ox, oy = cx + side * half_w, float(a[1]) + 20
                d = (xx - ox) * np.sin(angle) * -side + (yy - oy) * -np.cos(angle)
                reach = np.clip(1 - np.hypot(xx - ox, yy - oy) / (0.9 * half_w), 0, 1)
                relief += reach * (0.08 * gauss(d + 3, 2.5) - 0.12 * gauss(d - 3, 2.5))
        grain = 0.04 * drawing.smooth_noise(rng, (h, w), 0.7) + 0.05 * drawing.smooth_noise(rng, (h, w), 20)
    contact = 1.0 - 0.18 * np.exp(-dist / 6.0)
    smooth = cv2.resize((form * relief * contact).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    shade = (_down(detail) + 1.0) * smooth * (1.0 + grain)
    return drawing.MaskTemplate(name=kind, mask_type=kind, variant="front", alpha=body.astype(np.float32),
                            shade=np.clip(shade, 0.2, 1.6).astype(np.float32), anchors=an)

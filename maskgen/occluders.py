"""Occluders: a hand, a lock of hair or a phone in front of a masked face, hiding part of the mask.

An occluder is part of the scene, in front of the face whether it wears the mask or not: it is drawn
identically on the masked and the unmasked crop, and the map keeps only the mask's visible pixels.
Where the occluder is at least half opaque (``HIDES``) the pixel leaves the map and the masked image
takes the unmasked one's value there, so the pair still differs only inside the map
(``maskgen.format``). An occluder that would hide more than ``MAX_HIDDEN`` of the mask is not drawn.

Drawn in crop pixels from the sample's landmarks and map, with a generator of its own.
"""

from __future__ import annotations

import cv2
import numpy as np

OCCLUDERS = ("hand", "hair", "phone")
DEFAULT_OCCLUDER_WEIGHTS = {"hand": 0.45, "hair": 0.35, "phone": 0.2}
DEFAULT_OCCLUDER_SHARE = 0.1  # of the samples
HIDES = 0.5  # an occluder alpha from which a pixel counts as hidden
MAX_HIDDEN = 0.7  # of the mask's pixels; an occluder hiding more is left out
SS = 1  # supersampling of the drawings (1: anti-aliased edges at sub-pixel precision are enough, and cheap)
HAIR_COLOURS = ((28, 22, 20), (58, 40, 30), (98, 68, 44), (150, 110, 70), (196, 164, 112), (122, 58, 36),
                (150, 148, 146))
PHONE_COLOURS = ((22, 22, 24), (232, 232, 228), (190, 192, 196), (212, 190, 160), (40, 70, 130), (170, 40, 50),
                 (60, 120, 90))


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * SS * 16).astype(np.int32)


def _line(canvas, p, q, value, width) -> None:
    cv2.line(canvas, tuple(int(round(v * SS * 16)) for v in p), tuple(int(round(v * SS * 16)) for v in q), value,
             max(1, int(round(width * SS))), cv2.LINE_AA, 4)


def _down(canvas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _skin(face: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face's skin colour: the median over a patch on the upper nose, above any mask (float32 RGB)."""
    x, y = (landmarks[27] + landmarks[28]) / 2
    r = max(2, int(0.04 * face.shape[0]))
    patch = face[max(0, int(y) - r):int(y) + r + 1, max(0, int(x) - r):int(x) + r + 1].reshape(-1, 3)
    return np.median(patch, axis=0).astype(np.float32) if len(patch) else np.array([190, 150, 130], np.float32)


def _hand(rng, face, landmarks, target, face_width, shape):
    """A hand raised to the face: fingertips on the mask, palm and forearm running off the crop."""
    angle = np.deg2rad(-90 + rng.uniform(-55, 55))  # the fingers point up, more or less
    direction = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-direction[1], direction[0]])
    palm_w = face_width * rng.uniform(0.38, 0.48)
    finger_l = palm_w * rng.uniform(0.85, 1.0)
    knuckles = target - direction * finger_l * rng.uniform(0.7, 1.0)
    palm_c = knuckles - direction * palm_w * 0.55
    alpha = np.zeros((shape[0] * SS, shape[1] * SS), np.float32)
    shade = np.ones_like(alpha)
    _line(alpha, palm_c, palm_c - direction * face_width * 3, 1.0, palm_w * 0.8)  # forearm
    cv2.ellipse(alpha, tuple(int(round(v * SS * 16)) for v in palm_c),
                (int(palm_w * 0.5 * SS * 16), int(palm_w * 0.62 * SS * 16)), float(np.rad2deg(angle)) + 90,
                0, 360, 1.0, -1, cv2.LINE_AA, 4)
    spread = rng.uniform(0.03, 0.14)
    tips = []
    finger_w = palm_w / 4.3
    for i, length in enumerate((0.8, 0.98, 0.92, 0.72)):
        base = knuckles + across * (i - 1.5) * palm_w / 4.2
        turn = (i - 1.5) * spread
        d = direction * np.cos(turn) + across * np.sin(turn)
        tip = base + d * finger_l * length
        _line(alpha, base - direction * finger_w, tip, 1.0, finger_w * (0.95 if i else 0.85))
        tips.append((base, tip, d))
    for (b0, t0, _), (b1, t1, _) in zip(tips, tips[1:], strict=False):  # the shadowed gaps between fingers
        gap_tip = (t0 + t1) / 2 - direction * finger_l * 0.1
        _line(shade, (b0 + b1) / 2, gap_tip, 0.6, max(1.0, finger_w * 0.12))
    for _, tip, d in tips:  # nails
        _line(shade, tip - d * finger_w * 0.55, tip - d * finger_w * 0.15, 1.12, finger_w * 0.45)
    side = 1.0 if rng.random() < 0.5 else -1.0
    thumb_base = palm_c + across * side * palm_w * 0.45
    thumb_dir = direction * np.cos(0.9) + across * side * np.sin(0.9)
    _line(alpha, thumb_base, thumb_base + thumb_dir * finger_l * 0.6, 1.0, finger_w * 1.1)
    alpha = _down(alpha, shape)
    shade = _down(cv2.GaussianBlur(shade, (0, 0), max(0.8, finger_w * 0.08 * SS)), shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    along = ((xx - target[0]) * direction[0] + (yy - target[1]) * direction[1]) / max(face_width, 1.0)
    light = 0.95 + 0.12 * np.clip(along + 0.5, -1, 1) - 0.08 * np.abs(
        (xx - palm_c[0]) * across[0] + (yy - palm_c[1]) * across[1]) / max(palm_w, 1.0)
    tone = _skin(face, landmarks) * np.asarray(rng.uniform(0.92, 1.08, 3), np.float32) * np.float32(1.03)
    return (shade * light)[..., None] * tone, alpha


def _hair(rng, face, landmarks, target, face_width, shape):
    """A lock of hair falling from the top of the crop over the side of the mask, wispy at its end."""
    colour = np.asarray(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], np.float32)
    side = -1.0 if target[0] < landmarks[30][0] else 1.0
    brow = landmarks[19] if side < 0 else landmarks[24]  # the lock falls from the hairline above the brow
    start = np.array([brow[0] + side * face_width * rng.uniform(0.0, 0.25),
                      max(-4.0, brow[1] - face_width * rng.uniform(0.35, 0.6))])
    end = target + np.array([side * face_width * rng.uniform(-0.05, 0.1), face_width * rng.uniform(0.1, 0.4)])
    bow = np.array([side * face_width * rng.uniform(0.1, 0.3), 0.0])  # bowing out over the cheek
    width = face_width * rng.uniform(0.18, 0.32)
    t = np.linspace(0, 1, 24)[:, None]
    mid = (start + end) / 2 + bow
    spine = (1 - t) ** 2 * start + 2 * (1 - t) * t * mid + t ** 2 * end
    alpha = np.zeros((shape[0] * SS, shape[1] * SS), np.float32)
    shade = np.zeros_like(alpha)
    tangent = np.gradient(spine, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.maximum(np.linalg.norm(tangent, axis=1), 1e-6)[:, None]
    taper = (0.55 + 0.45 * np.sin(np.pi * np.clip(t * 1.4, 0, 1))) * (1 - t ** 2.5) * width / 2
    body = np.vstack([spine + normal * taper, (spine - normal * taper)[::-1]])
    cv2.fillPoly(alpha, [_pts(body)], 1.0, cv2.LINE_AA, 4)
    cv2.fillPoly(shade, [_pts(body)], 0.85, cv2.LINE_AA, 4)
    for _ in range(int(rng.integers(45, 70))):  # strands, some straying past the lock's end and edges
        offset = rng.uniform(-0.75, 0.75)
        reach = rng.uniform(0.8, 1.1)
        wave = rng.uniform(-0.06, 0.06) * face_width
        ts = np.linspace(0, reach, 20)[:, None]
        path = (1 - ts) ** 2 * start + 2 * (1 - ts) * ts * mid + ts ** 2 * end
        path = path + normal[np.minimum((ts[:, 0] * 23).astype(int), 23)] * (offset * width / 2 + wave * np.sin(
            ts * 9 + offset * 5))
        strand = _pts(path)
        cv2.polylines(alpha, [strand], False, 1.0, 1, cv2.LINE_AA, 4)
        cv2.polylines(shade, [strand], False, float(rng.uniform(0.6, 1.35)), 1, cv2.LINE_AA, 4)
    alpha = _down(alpha, shape)
    shade = _down(shade, shape) / np.maximum(alpha, 1e-3)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.6)  # soft, not cut-out, edges
    rows = np.arange(shape[0], dtype=np.float32)[:, None]  # the sheen is a band across the lock
    sheen = 1.0 + 0.25 * np.exp(-(((rows - (start[1] + end[1]) * 0.35) / max(width, 1.0)) ** 2))
    return (np.clip(shade * sheen, 0.4, 1.6)[..., None] * colour).astype(np.float32), alpha


def _rounded_rect(centre, half, angle, radius) -> np.ndarray:
    corners = []
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    for sx, sy, start in ((1, 1, 0), (-1, 1, np.pi / 2), (-1, -1, np.pi), (1, -1, 3 * np.pi / 2)):
        c = np.asarray(centre) + u * sx * (half[0] - radius) + v * sy * (half[1] - radius)
        for t in np.linspace(start, start + np.pi / 2, 6):
            corners.append(c + radius * (np.cos(t) * u + np.sin(t) * v))
    return np.array(corners)


def _phone(rng, face, landmarks, target, face_width, shape):
    """A phone held to the cheek, its back to the camera: a rounded slab with a camera module."""
    colour = np.asarray(PHONE_COLOURS[int(rng.integers(len(PHONE_COLOURS)))], np.float32)
    height = face_width * rng.uniform(0.6, 0.8)
    half = (height / 2, height * rng.uniform(0.22, 0.25))  # along, across
    side = -1.0 if target[0] < landmarks[30][0] else 1.0
    angle = np.deg2rad(90 + side * rng.uniform(-40, 5))  # long axis from the ear down towards the mouth
    centre = target + np.array([side * face_width * rng.uniform(0.05, 0.2), -height * rng.uniform(0.0, 0.3)])
    outline = _rounded_rect(centre, half, angle, half[1] * 0.3)
    alpha = np.zeros((shape[0] * SS, shape[1] * SS), np.float32)
    shade = np.ones_like(alpha)
    cv2.fillPoly(alpha, [_pts(outline)], 1.0, cv2.LINE_AA, 4)
    cv2.polylines(shade, [_pts(outline)], True, 1.3, max(1, int(half[1] * 0.06 * SS)), cv2.LINE_AA, 4)  # the rim
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    top = centre - u * half[0] * 0.62 + v * half[1] * 0.35  # the camera module near the top corner
    module = _rounded_rect(top, (half[1] * 0.4, half[1] * 0.4), angle, half[1] * 0.12)
    cv2.fillPoly(shade, [_pts(module)], 0.8, cv2.LINE_AA, 4)
    for k in (-1, 1):
        lens = top + u * k * half[1] * 0.18
        cv2.circle(shade, tuple(int(round(x * SS * 16)) for x in lens), int(half[1] * 0.14 * SS * 16), 0.15, -1,
                   cv2.LINE_AA, 4)
    alpha = _down(alpha, shape)
    shade = _down(shade, shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    gloss = 1.0 + 0.12 * np.exp(-(((xx - centre[0]) * u[1] - (yy - centre[1]) * u[0] + half[1] * 0.3)
                                  / max(half[1] * 0.5, 1.0)) ** 2)
    lens_dark = np.where(shade < 0.5, shade * 40.0, 0.0)[..., None]  # lenses are dark glass whatever the colour
    rgb = np.where(shade[..., None] < 0.5, lens_dark, (shade * gloss)[..., None] * colour)
    return rgb.astype(np.float32), alpha


_DRAW = {"hand": _hand, "hair": _hair, "phone": _phone}


def occlude(name: str, unmasked: np.ndarray, masked: np.ndarray, binary: np.ndarray, landmarks: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(unmasked, masked, map, share of the mask hidden) with the occluder ``name`` drawn in front of
    both images; None when the mask is empty or the occluder would hide more than ``MAX_HIDDEN`` of it."""
    if name not in _DRAW:
        raise ValueError(f"unknown occluder {name!r}; choose from {', '.join(OCCLUDERS)}")
    points = cv2.findNonZero(binary)
    if points is None:
        return None
    points = points.reshape(-1, 2)  # (x, y) rows, whichever layout OpenCV returns
    target = points[int(rng.integers(len(points)))].astype(np.float64)
    landmarks = np.asarray(landmarks, np.float64)
    face_width = float(np.linalg.norm(landmarks[16] - landmarks[0]))
    rgb, alpha = _DRAW[name](rng, unmasked, landmarks, target, face_width, binary.shape)
    np.clip(alpha, 0, 1, out=alpha)
    hidden = (alpha >= HIDES).view(np.uint8)
    share = cv2.countNonZero(cv2.bitwise_and(hidden, binary)) / max(1, cv2.countNonZero(binary))
    if share > MAX_HIDDEN:
        return None
    # Only the occluder's box changes.
    x, y, w, h = cv2.boundingRect((alpha > 0).view(np.uint8))
    box = (slice(y, y + h), slice(x, x + w))
    a = alpha[box]
    a3 = cv2.merge([a, a, a])
    colour = rgb[box]

    def over(image: np.ndarray) -> np.ndarray:
        out = image.copy()
        blended = cv2.add(image[box].astype(np.float32) * (1.0 - a3), colour * a3)
        out[box] = cv2.add(blended, 0.0, dtype=cv2.CV_8U)  # rounds, saturates
        return out

    unmasked_o, masked_o = over(unmasked), over(masked)
    cv2.copyTo(unmasked_o, hidden, masked_o)
    binary_o = binary.copy()
    binary_o[hidden > 0] = 0
    return unmasked_o, masked_o, binary_o, share

"""What makes a composited mask look photographed: per-sample appearance jitter of drawn masks,
the scene's colour cast on the mask, and camera effects on the whole crop.

Camera effects (white balance, defocus, sensor noise, JPEG) are applied identically to the masked
and the unmasked image: the unmasked face F becomes F', the masked image M becomes M' (only over the
mask's box: the rest of M is F), and the final masked image is M' inside the map and F' outside it,
so the pair still differs only inside the map. Every random choice comes from the sample's
generator; nothing depends on time, threads or global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

CAMERA_SHARE = 0.4  # fraction of samples that get camera effects at all (0.5 cost maskgen 10% of its speed)
NOISE_SIGMA = (1.0, 4.0)  # sensor noise, in 0-255 units
BLUR_SIGMA_128 = 0.8  # the largest defocus blur (px) at 128 px; scales with the resolution
BLUR_SHARE = 0.6  # of the samples with camera effects
JPEG_QUALITY = (60, 95)
JPEG_SHARE = 0.6
CAST = 0.04  # white balance: red/blue gains 1 +- cast, cast up to this
BLOCK = 16  # JPEG's macroblock (4:2:0): the masked image is re-encoded over a box aligned to it
NOISE_TILE = 2  # the cached noise field is this many crops wide; each sample reads it at an offset


@dataclass(frozen=True)
class Camera:
    noise: float = 0.0  # sensor noise sigma, 0-255 units (0 = none)
    blur: float = 0.0  # Gaussian blur sigma in pixels (0 = none)
    jpeg: int = 0  # JPEG quality (0 = none)
    cast: float = 0.0  # white balance: red gain 1 + cast, blue gain 1 - cast

    def meta(self) -> dict:
        return {"camera_noise": round(self.noise, 3), "camera_blur": round(self.blur, 3),
                "camera_jpeg": int(self.jpeg), "camera_cast": round(self.cast, 4)}

    @property
    def active(self) -> bool:
        return bool(self.noise or self.blur or self.jpeg or self.cast)


def sample_camera(rng: np.random.Generator, res: int) -> Camera:
    """Camera parameters for one sample; a fixed number of draws whatever comes out."""
    on, u_noise, u_blur, u_jpeg, u_cast, has_blur, has_jpeg = rng.random(7).tolist()
    if on >= CAMERA_SHARE:
        return Camera()
    blur = BLUR_SIGMA_128 * res / 128 * (0.3 + 0.7 * u_blur) if has_blur < BLUR_SHARE else 0.0
    jpeg = int(round(JPEG_QUALITY[0] + (JPEG_QUALITY[1] - JPEG_QUALITY[0]) * u_jpeg)) if has_jpeg < JPEG_SHARE else 0
    return Camera(noise=NOISE_SIGMA[0] + (NOISE_SIGMA[1] - NOISE_SIGMA[0]) * u_noise, blur=blur, jpeg=jpeg,
                  cast=CAST * (2 * u_cast - 1))


@lru_cache(maxsize=4)
def _noise_tile(res: int) -> np.ndarray:
    """A fixed field of unit sensor noise (float32, NOISE_TILE crops square, 3 channels): mostly
    luminance, some chroma, a little spatial correlation (demosaicing). Read-only."""
    rng = np.random.default_rng(20_15)
    size = NOISE_TILE * res
    lum = rng.standard_normal((size, size, 1), dtype=np.float32)
    chroma = rng.standard_normal((size, size, 3), dtype=np.float32)
    field = cv2.GaussianBlur(0.85 * lum + 0.5 * chroma, (0, 0), 0.5)
    field /= max(float(field.std()), 1e-6)
    field.flags.writeable = False
    return field


def _degrade(image: np.ndarray, cam: Camera, noise: np.ndarray) -> np.ndarray:
    """White balance, blur, noise and JPEG on a uint8 RGB image (``noise``: its unit noise)."""
    out = cv2.multiply(image, (1.0 + cam.cast, 1.0, 1.0 - cam.cast, 0.0), dtype=cv2.CV_32F)  # to float, cast
    if cam.blur:
        out = cv2.GaussianBlur(out, (0, 0), cam.blur)
    if cam.noise:
        out = cv2.scaleAdd(noise, cam.noise, out)
    out = cv2.add(out, 0.0, dtype=cv2.CV_8U)  # rounds, saturates
    if cam.jpeg:
        # OpenCV's codec takes BGR: JPEG's luma weights and chroma subsampling differ between R and B.
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def apply_camera(unmasked: np.ndarray, masked: np.ndarray, binary: np.ndarray, box: tuple[int, int, int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Camera]:
    """(masked', unmasked', camera): the same camera on both images; outside the map they stay equal.

    ``box`` bounds the map (x0, y0, x1, y1). The masked image is degraded only over that box grown by
    a margin (blur support) and aligned to JPEG's blocks, so its blocks line up with the unmasked one's.
    """
    res = unmasked.shape[0]
    cam = sample_camera(rng, res)
    oy, ox = (int(v) for v in rng.integers(0, (NOISE_TILE - 1) * res + 1, size=2))
    if not cam.active:
        return masked, unmasked, cam
    h, w = unmasked.shape[:2]
    tile = _noise_tile(res)
    if tile.shape[0] < oy + h or tile.shape[1] < ox + w:  # a non-square crop: a fresh tile of its size
        tile = _noise_tile(max(h, w))
    unmasked_c = _degrade(unmasked, cam, tile[oy:oy + h, ox:ox + w])
    x0, y0, x1, y1 = box
    margin = int(np.ceil(3 * cam.blur)) + 1
    bx0, by0 = max(0, (x0 - margin) // BLOCK * BLOCK), max(0, (y0 - margin) // BLOCK * BLOCK)
    bx1, by1 = min(w, -(-(x1 + margin) // BLOCK) * BLOCK), min(h, -(-(y1 + margin) // BLOCK) * BLOCK)
    patch = _degrade(np.ascontiguousarray(masked[by0:by1, bx0:bx1]), cam,
                     tile[oy + by0:oy + by1, ox + bx0:ox + bx1])
    masked_c = unmasked_c.copy()
    cv2.copyTo(patch, np.ascontiguousarray(binary[by0:by1, bx0:bx1]), masked_c[by0:by1, bx0:bx1])
    return masked_c, unmasked_c, cam


# --- the scene's light on the mask --------------------------------------------------------------

# Mean colour (RGB) of CelebA's aligned crops: a crop's departure from it is taken as the scene's cast.
SCENE_MEAN = (133.8, 110.2, 99.4)
SCENE_CAST_SHARE = 0.3  # how much of a crop's cast the mask takes (the face's own colour is most of it)
SCENE_CAST_LIMIT = 0.06


def scene_tint(face: np.ndarray) -> tuple[float, float, float]:
    """Per-channel gains (about 1) giving the mask a share of the crop's colour cast."""
    ratios = [max(m, 1.0) / r for m, r in zip(cv2.mean(face)[:3], SCENE_MEAN, strict=True)]  # plain floats: 3 values
    level = (ratios[0] * ratios[1] * ratios[2]) ** (1 / 3)  # a cast, not a brightness
    lo, hi = 1 - SCENE_CAST_LIMIT, 1 + SCENE_CAST_LIMIT
    r, g, b = (min(hi, max(lo, (x / level) ** SCENE_CAST_SHARE)) for x in ratios)
    return r, g, b


# --- per-sample appearance of drawn masks -------------------------------------------------------

RELIEF = (0.7, 1.3)  # how strongly a sample shows its template's shading (sheen, folds)
COLOR_JITTER = 0.035  # per-channel spread of a named colour (dye lots, fading)
BRIGHTNESS = (0.9, 1.06)


@dataclass(frozen=True)
class Look:
    relief: float
    base_gain: tuple[float, float, float]
    accent_gain: tuple[float, float, float]


def sample_look(rng: np.random.Generator) -> Look:
    """Per-sample jitter of a drawn mask; a fixed number of draws."""
    u = rng.random(3).tolist()
    jitter = rng.standard_normal(6).tolist()
    relief = RELIEF[0] + (RELIEF[1] - RELIEF[0]) * u[0]
    bright = [BRIGHTNESS[0] + (BRIGHTNESS[1] - BRIGHTNESS[0]) * x for x in u[1:]]
    gains = [min(1.15, max(0.75, (1.0 + COLOR_JITTER * j) * bright[i // 3])) for i, j in enumerate(jitter)]
    return Look(relief, tuple(gains[:3]), tuple(gains[3:]))


def with_relief(shade: np.ndarray, relief: float) -> np.ndarray:
    """1 + relief * (shade - 1): a sample's mask shows more or less of its drawn shading."""
    return cv2.addWeighted(shade, relief, shade, 0.0, 1.0 - relief)


# --- folds and creases of fabric masks ----------------------------------------------------------

FOLD_TYPES = ("cloth", "gaiter", "bandana")  # soft fabric, creased by wear, washing and folding
DEFAULT_FOLD_SHARE = 0.5  # of the fabric masks
FOLD_COUNT = (2, 6)  # creases on a creased mask
FOLD_DEPTH = (0.15, 0.32)  # a crease's shadow, of the fabric's light


def choose_folds(kind: str, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """(creases, seed) for a mask of ``kind``: creases on ``share`` of the fabric ones, else 0; draws from
    ``rng`` only for fabric kinds."""
    if kind not in FOLD_TYPES or share <= 0.0:
        return 0, 0
    u, count = float(rng.random()), int(rng.integers(FOLD_COUNT[0], FOLD_COUNT[1] + 1))
    seed = int(rng.integers(2 ** 31))
    return (count, seed) if u < share else (0, 0)


def crease_shading(count: int, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A multiplicative shading (float32, ``shape``, about 1) of ``count`` creases across a mask's box:
    each a lit ridge beside a shadowed fold, mostly across the mask or fanning from its sides (where the
    ear loops pull), with a soft rumple of the cloth between them."""
    h, w = shape
    rng = np.random.default_rng(seed)
    size = float(max(h, w))
    lit = np.zeros(shape, np.float32)
    dark = np.zeros(shape, np.float32)
    width = max(1, int(round(size * 0.025)))
    for _ in range(count):
        if rng.random() < 0.5:  # across: from one side to the other, a little slanted
            y = rng.uniform(0.2, 0.9) * h
            p, q = np.array([0.0, y]), np.array([float(w), y + rng.uniform(-0.25, 0.25) * h])
        else:  # from a side towards the middle
            side = 0.0 if rng.random() < 0.5 else float(w)
            p = np.array([side, rng.uniform(0.1, 0.7) * h])
            q = np.array([w / 2 + rng.uniform(-0.15, 0.15) * w, p[1] + rng.uniform(-0.1, 0.4) * h])
        normal = np.array([q[1] - p[1], p[0] - q[0]]) / max(float(np.hypot(*(q - p))), 1e-6)
        offset = normal * width
        depth = float(rng.uniform(*FOLD_DEPTH))
        cv2.line(lit, tuple(int(v) for v in p - offset), tuple(int(v) for v in q - offset), depth * 0.6, width,
                 cv2.LINE_AA)
        cv2.line(dark, tuple(int(v) for v in p + offset), tuple(int(v) for v in q + offset), depth, width, cv2.LINE_AA)
    sigma = max(0.6, size * 0.01)
    # the fold's crease is sharp, the lit slope rising to it broad
    field = 1.0 + cv2.GaussianBlur(lit, (0, 0), 3 * sigma) * 2.0 - cv2.GaussianBlur(dark, (0, 0), sigma)
    rumple = cv2.resize(rng.standard_normal((4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (field * (1.0 + 0.04 * rumple)).astype(np.float32)

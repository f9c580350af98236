"""Face points: the 68-point (iBUG 300-W, dlib) scheme's named index ranges and the geometry on them:
eye centres, CelebA's 5 points, a face box from 5 points, the head's turn, and whether points are usable."""

from __future__ import annotations

import numpy as np

MIN_EYE_DISTANCE = 8.0  # px in the source: below this the 68 points are noise, not a face

# Index ranges of the 68-point scheme used across the package.
JAW = slice(0, 17)
NOSE_BRIDGE = slice(27, 31)
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
NOSE_TIP, CHIN, MOUTH_LEFT, MOUTH_RIGHT = 30, 8, 48, 54
NOSE_BOTTOM, UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 33, 51, 57  # below the nostrils; lip outline, centre

# Face box from CelebA's 5 points, fitted on dlib HOG boxes of CelebA faces:
# width = BOX_SCALE * hypot(eye-mouth distance, eye distance), centre shifted down by BOX_DROP * eye-mouth.
BOX_SCALE = 1.55
BOX_DROP = 0.07


def eye_centers(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def five_points(points: np.ndarray) -> np.ndarray:
    """The 68 points reduced to CelebA's 5 (eyes, nose tip, mouth corners)."""
    left, right = eye_centers(points)
    return np.stack([left, right, points[NOSE_TIP], points[MOUTH_LEFT], points[MOUTH_RIGHT]])


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

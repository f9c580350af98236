"""Is a predicted mask map where a face mask would be? ``mask_plausibility`` judges a map on an
aligned face crop against the face's eye line, mouth line and width (``face_lines``), from the
crop's 68 landmarks or, without them, the 5 points alignment puts every face on
(``template_landmarks``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskgen.align import DEFAULT_FACE_SCALE, canonical_points
from maskgen.landmarks import FIVE_LEFT_EYE, FIVE_MOUTH, FIVE_RIGHT_EYE, JAW, LEFT_EYE, MOUTH, RIGHT_EYE

# Plausibility of a predicted mask map on an aligned face crop (see mask_plausibility)
PLAUSIBLE_COVERAGE = (0.03, 0.45)  # of the crop; the synthetic test masks cover 10-25%
MIN_DROP_BELOW_EYES = 0.25  # centroid below the eye line by this fraction of the eye-to-mouth distance
MAX_SHARE_ABOVE_EYES = 0.2  # a face mask leaves the eyes free: little of the map may lie above them
FACE_HALF_WIDTH = 1.1  # in eye distances: the jaw spans about 2.2 eye distances


@dataclass(frozen=True)
class Plausibility:
    plausible: bool
    coverage: float
    centroid: tuple[float, float] | None  # (x, y) in crop pixels; None for an empty map
    reason: str | None = None  # why not plausible


def face_lines(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(eye line y, mouth line y, face left x, face right x) from 68 dlib points or the 5 template
    points (eyes, nose tip, mouth corners) of an aligned crop."""
    points = np.asarray(landmarks, np.float64)
    if points.shape == (68, 2):
        eyes, mouth, jaw = np.concatenate([points[LEFT_EYE], points[RIGHT_EYE]]), points[MOUTH], points[JAW]
        return eyes[:, 1].mean(), mouth[:, 1].mean(), jaw[:, 0].min(), jaw[:, 0].max()
    if points.shape == (5, 2):
        left, right = points[FIVE_LEFT_EYE], points[FIVE_RIGHT_EYE]
        half = FACE_HALF_WIDTH * np.linalg.norm(right - left)
        centre = (left[0] + right[0]) / 2
        return (left[1] + right[1]) / 2, points[FIVE_MOUTH, 1].mean(), centre - half, centre + half
    raise ValueError(f"landmarks must be 68 or 5 points, got shape {points.shape}")


def template_landmarks(resolution: int, face_scale: float = DEFAULT_FACE_SCALE) -> np.ndarray:
    """The 5 template points of an aligned crop: alignment puts every face's eyes, nose and mouth
    corners there (least squares), so they stand in when a crop's own landmarks are unknown."""
    return canonical_points(resolution, face_scale)


def mask_plausibility(crop_map: np.ndarray, landmarks: np.ndarray | None = None,
                      face_scale: float = DEFAULT_FACE_SCALE) -> Plausibility:
    """Is this map where a face mask would be? On an aligned crop a worn mask covers nose, mouth
    and chin: plausible when

    * its coverage is within ``PLAUSIBLE_COVERAGE`` of the crop (3-45%: an empty or speckled map
      found nothing, a map over most of the crop found everything),
    * its centroid lies below the eye line by ``MIN_DROP_BELOW_EYES`` of the eye-to-mouth distance,
    * at most ``MAX_SHARE_ABOVE_EYES`` of its pixels lie above the eye line, and
    * the centroid is within the face's width (jaw points, or 2.2 eye distances without them).

    ``landmarks``: the crop's 68 points (dataset samples) or 5 points; None: the alignment template.
    """
    binary = np.asarray(crop_map)
    binary = binary > (127 if binary.dtype != bool and binary.max(initial=0) > 1 else 0)
    size = binary.shape[0]
    coverage = float(binary.mean())
    ys, xs = np.nonzero(binary)
    centroid = (float(xs.mean()), float(ys.mean())) if len(ys) else None
    lo, hi = PLAUSIBLE_COVERAGE
    if not lo <= coverage <= hi:
        return Plausibility(False, coverage, centroid, f"coverage {coverage:.1%} outside {lo:.0%}-{hi:.0%}")
    eye_y, mouth_y, left_x, right_x = face_lines(template_landmarks(size, face_scale) if landmarks is None
                                                 else landmarks)
    if centroid[1] < eye_y + MIN_DROP_BELOW_EYES * (mouth_y - eye_y):
        return Plausibility(False, coverage, centroid, "centroid not below the eyes")
    above = float((ys < eye_y).mean())
    if above > MAX_SHARE_ABOVE_EYES:
        return Plausibility(False, coverage, centroid, f"{above:.0%} of the map above the eye line")
    if not left_x <= centroid[0] <= right_x:
        return Plausibility(False, coverage, centroid, "centroid outside the face's width")
    return Plausibility(True, coverage, centroid)

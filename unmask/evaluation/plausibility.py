"""Is a predicted mask map where a face mask would be? ``mask_plausibility`` judges a map on an
aligned face crop against the face's eye line, mouth line and width (``maskgen.landmarks.face_lines``),
from the crop's 68 landmarks or, without them, the 5 points alignment puts every face on
(``maskgen.align.canonical_points``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskgen.align import DEFAULT_FACE_SCALE, canonical_points
from maskgen.landmarks import face_lines

# Plausibility of a predicted mask map on an aligned face crop (see mask_plausibility)
PLAUSIBLE_COVERAGE = (0.03, 0.45)  # of the crop; the synthetic test masks cover 10-25%
MIN_DROP_BELOW_EYES = 0.25  # centroid below the eye line by this fraction of the eye-to-mouth distance
MAX_SHARE_ABOVE_EYES = 0.2  # a face mask leaves the eyes free: little of the map may lie above them


@dataclass(frozen=True)
class Plausibility:
    plausible: bool
    coverage: float
    centroid: tuple[float, float] | None  # (x, y) in crop pixels; None for an empty map
    reason: str | None = None  # why not plausible


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
    eye_y, mouth_y, left_x, right_x = face_lines(canonical_points(size, face_scale) if landmarks is None
                                                 else landmarks)
    if centroid[1] < eye_y + MIN_DROP_BELOW_EYES * (mouth_y - eye_y):
        return Plausibility(False, coverage, centroid, "centroid not below the eyes")
    above = float((ys < eye_y).mean())
    if above > MAX_SHARE_ABOVE_EYES:
        return Plausibility(False, coverage, centroid, f"{above:.0%} of the map above the eye line")
    if not left_x <= centroid[0] <= right_x:
        return Plausibility(False, coverage, centroid, "centroid outside the face's width")
    return Plausibility(True, coverage, centroid)

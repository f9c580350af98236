"""Is a predicted map where a face mask would be? Hand-made maps on the aligned-crop layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskgen.align import canonical_points
from maskgen.landmarks import face_lines
from unmask.evaluation.plausibility import mask_plausibility

RES = 128


def _ellipse(centre_y: float, half_height: float, half_width: float = 0.22) -> np.ndarray:
    crop_map = np.zeros((RES, RES), np.uint8)
    cv2.ellipse(crop_map, (RES // 2, round(centre_y * RES)), (round(half_width * RES), round(half_height * RES)),
                0, 0, 360, 255, -1)
    return crop_map


def test_lower_face_blob_is_plausible():
    verdict = mask_plausibility(_ellipse(0.68, 0.14))
    assert verdict.plausible, verdict.reason
    assert 0.03 < verdict.coverage < 0.45


@pytest.mark.parametrize("crop_map, why", [
    (np.full((RES, RES), 255, np.uint8), "coverage"),
    (np.zeros((RES, RES), np.uint8), "coverage"),
    (_ellipse(0.46, 0.07), "eyes"),  # a band over the eyes
    (_ellipse(0.55, 0.35, 0.3), "eye line"),  # forehead to chin: much of it above the eyes
], ids=["all-white", "empty", "eyes-band", "whole-face"])
def test_implausible_maps(crop_map, why):
    verdict = mask_plausibility(crop_map)
    assert not verdict.plausible
    assert why in verdict.reason


def test_off_centre_blob_is_implausible():
    crop_map = np.zeros((RES, RES), np.uint8)
    crop_map[80:110, 0:20] = 255
    assert "width" in mask_plausibility(crop_map).reason


def test_68_point_landmarks_are_used():
    eye_y, mouth_y, left, right = face_lines(canonical_points(RES))
    points = np.zeros((68, 2))
    points[0:17] = np.c_[np.linspace(left, right, 17), np.full(17, 0.7 * RES)]
    points[36:48] = (RES / 2, eye_y + 0.2 * RES)  # eyes much lower than the template's
    points[48:68] = (RES / 2, mouth_y + 0.2 * RES)
    blob = _ellipse(0.68, 0.14)
    assert mask_plausibility(blob).plausible
    assert not mask_plausibility(blob, points).plausible  # now the blob covers these eyes
    assert mask_plausibility(blob > 0).coverage == mask_plausibility(blob).coverage  # bool maps too

"""Sharpness of a region (Laplacian energy ratio) against hand computations and on a real face."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from unmask import metrics
from unmask.metrics.sharpness import laplacian_energy, sharpness


def test_laplacian_energy_by_hand():
    # One bright pixel (luma 255 * 0.299 = 76.245 in red) in a 5x5 black image: the 4-neighbour
    # Laplacian is -4v at the pixel and v at its four neighbours: energy 16 v^2 + 4 v^2 = 20 v^2.
    img = np.zeros((5, 5, 3), np.uint8)
    img[2, 2, 0] = 255
    v = 255 * 0.299
    assert laplacian_energy(img) == pytest.approx(20 * v * v)
    region = np.zeros((5, 5), bool)
    region[2, 2] = True
    assert laplacian_energy(img, region) == pytest.approx(16 * v * v)


def test_identical_images_score_one_and_flat_regions_too(face256):
    assert sharpness(face256, face256) == pytest.approx(1.0)
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert sharpness(flat, flat, np.ones((32, 32), bool)) == pytest.approx(1.0)


def test_blur_inside_the_region_lowers_it_and_noise_raises_it(face256):
    region = np.zeros(face256.shape[:2], bool)
    region[150:230, 70:190] = True  # mouth and chin
    blurred = face256.copy()
    blurred[region] = cv2.GaussianBlur(face256, (0, 0), 2.0)[region]
    soft = sharpness(blurred, face256, region)
    assert soft < 0.5
    # the same blur judged over the whole image counts the untouched pixels too: a weaker drop
    assert soft < sharpness(blurred, face256) < 1.0
    noisy = np.clip(face256 + np.random.default_rng(0).normal(0, 12, face256.shape), 0, 255).astype(np.uint8)
    assert sharpness(noisy, face256, region) > 1.5


def test_shapes_and_empty_region_are_errors(face256):
    with pytest.raises(ValueError, match="differ"):
        sharpness(face256, face256[:128])
    with pytest.raises(ValueError, match="empty region"):
        sharpness(face256, face256, np.zeros((256, 256), bool))
    with pytest.raises(TypeError, match="uint8"):
        sharpness(face256.astype(np.float32), face256)


def test_accumulator_takes_regions_and_skips_empty_ones(face256):
    acc = metrics.get("sharpness").accumulator()
    region = np.zeros((2, 256, 256), bool)
    region[0, 100:200, 60:200] = True  # the second image has nothing to judge
    blurred = cv2.GaussianBlur(face256, (0, 0), 3.0)
    acc.update_batch(np.stack([blurred, blurred]), np.stack([face256, face256]), regions=region)
    result = acc.result()
    assert result.count == 1 and math.isnan(result.per_image[1])
    assert result.value == pytest.approx(sharpness(blurred, face256, region[0]))

"""OpenCV inpainting baselines: they change the map region only, and beat doing nothing."""

from __future__ import annotations

import numpy as np
import pytest

from unmask import metrics
from unmask.evaluation import baselines


def _smooth_face(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.clip(np.dstack([80 + 120 * yy, 60 + 100 * xx, 150 - 60 * yy * xx]), 0, 255).astype(np.uint8)


def _masked(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask_map = np.zeros(image.shape[:2], bool)
    mask_map[36:56, 16:48] = True  # a lower-face "mask"
    masked = image.copy()
    masked[mask_map] = (40, 120, 220)
    return masked, mask_map


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_only_pixels_inside_the_map_change(name):
    masked, mask_map = _masked(_smooth_face())
    out = baselines.get(name)(masked, mask_map)
    assert out.dtype == np.uint8 and out.shape == masked.shape
    np.testing.assert_array_equal(out[~mask_map], masked[~mask_map])
    changed = np.any(out != masked, axis=2)
    assert changed[mask_map].mean() > 0.9


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_inpainting_beats_the_no_op(name):
    face = _smooth_face()
    masked, mask_map = _masked(face)
    psnr = metrics.get("psnr")
    assert psnr(baselines.get(name)(masked, mask_map), face) > psnr(masked, face) + 10


def test_batch_and_map_formats_agree():
    masked, mask_map = _masked(_smooth_face())
    telea = baselines.get("telea")
    batch = telea.batch(np.stack([masked, masked]), np.stack([mask_map, mask_map]).astype(np.uint8) * 255)
    np.testing.assert_array_equal(batch[0], telea(masked, mask_map))
    np.testing.assert_array_equal(batch[1], batch[0])


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError):
        baselines.register("telea", "again")(lambda image, mask_map, radius: image)
    with pytest.raises(KeyError, match="known: telea"):
        baselines.get("nope")

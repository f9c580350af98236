"""Large photos (longer side over ``LARGE_PHOTO_SIDE``): faces found with the tiles on a reduced copy, cut out of a
window around each, pasted and mapped over that window only; the same faces and outputs as the whole-photo path.
Untrained tiny models (64 px): properties of the geometry and the paste."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from maskgen import align
from maskgen.align import add_map_to_photo, align_face, map_to_photo, paste_back, paste_back_into
from maskgen.landmarks import detect_all
from maskgen.source import load_image
from tests.unmask.testutils import tiny_config
from unmask.models import Generator, MSeg
from unmask.predict import LARGE_PHOTO_SIDE, Unmasker, plan_outputs
from unmask.predict_files import predict_files

RES = 64
GROUP = "0761.jpg"  # three people side by side: HOG, BlazeFace and the tiles all run
ENLARGE = 9  # 512 x 210 -> 4608 x 1890: over LARGE_PHOTO_SIDE


@pytest.fixture(scope="module")
def group(real_masked_dir) -> np.ndarray:
    return load_image(real_masked_dir / GROUP, max_side=None)


@pytest.fixture(scope="module")
def large(group) -> np.ndarray:
    photo = cv2.resize(group, None, fx=ENLARGE, fy=ENLARGE, interpolation=cv2.INTER_CUBIC)
    assert max(photo.shape[:2]) > LARGE_PHOTO_SIDE
    return photo


def _unmasker(large_side: int | None) -> Unmasker:
    torch.manual_seed(0)
    cfg = tiny_config(**{"train.resolution": RES})
    return Unmasker(Generator(cfg.generator), MSeg(cfg.mseg), cfg, large_side=large_side)


@pytest.mark.parametrize("rows", [align.PASTE_ROWS, 37])  # one strip per face, and many
def test_the_windowed_paste_is_the_full_paste_within_rounding(group, monkeypatch, rows):
    monkeypatch.setattr(align, "PASTE_ROWS", rows)
    for found in detect_all(group):
        face = align_face(group, found.points, 96, fill="edge", margin=16)
        edited = 255 - face.image  # far from the photo: every pixel pasted shows
        region = np.zeros(face.image.shape[:2], np.float32)
        cv2.ellipse(region, (64, 80), (40, 30), 0, 0, 360, 1.0, -1)
        full = paste_back(group, edited, face.matrix, region=region)
        windowed = group.copy()
        paste_back_into(windowed, edited, face.matrix, region=region)
        difference = np.abs(full.astype(int) - windowed)
        assert (full != group).any() and difference.max() <= 1
        assert (difference > 0).mean() < 0.001
        whole = group.copy()
        paste_back_into(whole, edited, face.matrix)  # no region: the whole crop, feathered
        assert np.abs(paste_back(group, edited, face.matrix).astype(int) - whole).max() <= 1


def test_a_map_added_over_its_window_is_the_map_carried_onto_the_photo(group, monkeypatch):
    monkeypatch.setattr(align, "PASTE_ROWS", 37)
    found = detect_all(group)[0]
    face = align_face(group, found.points, 96, fill="edge", margin=16)
    crop_map = np.zeros((128, 128), np.uint8)
    cv2.ellipse(crop_map, (64, 80), (40, 30), 20, 0, 360, 255, -1)
    expected = map_to_photo(crop_map, face.matrix, group.shape)
    union = np.zeros(group.shape[:2], np.uint8)
    add_map_to_photo(union, crop_map, face.matrix)
    assert expected.any() and (union != expected).sum() <= 0.002 * (expected > 0).sum()


def test_a_large_photo_gives_the_faces_and_outputs_of_the_whole_photo_path(large):
    windowed = _unmasker(LARGE_PHOTO_SIDE)(large)
    whole = _unmasker(None)(large)
    assert len(windowed.faces) == len(whole.faces) == 3
    for a, b in zip(windowed.faces, whole.faces, strict=True):
        assert a.box == b.box and np.array_equal(a.points, b.points) and a.margin == b.margin
        np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-9)
        assert np.array_equal(a.valid, b.valid)
        # align_face shrinks a face this much larger than the crop first: the window, not the photo, so that a
        # few crop pixels differ a little (INTER_AREA's grid starts at the window's corner)
        assert np.abs(a.crop_input.astype(int) - b.crop_input).mean() < 1.0
        assert (a.crop_map != b.crop_map).mean() < 0.01
    assert (windowed.map != whole.map).mean() < 0.002
    difference = np.abs(windowed.image.astype(int) - whole.image)
    assert difference.mean() < 0.05 and np.percentile(difference, 99.9) <= 2
    # where the whole-photo path left the photo as it was, so does the windowed one (within rounding, and the
    # untrained networks' answer to crops a level apart)
    untouched = (whole.image == large).all(axis=-1)
    assert np.abs(windowed.image[untouched].astype(int) - large[untouched]).max() <= 2


def test_the_written_photo_is_the_result_and_the_result_stays_rgb(real_masked_dir, tmp_path):
    unmasker = _unmasker(LARGE_PHOTO_SIDE)
    plan, _ = plan_outputs([real_masked_dir / GROUP], tmp_path / "out")
    expected = unmasker(load_image(real_masked_dir / GROUP, max_side=None)).image
    predict_files(unmasker, plan)
    written = cv2.cvtColor(cv2.imread(str(plan[0].image)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(written, expected)

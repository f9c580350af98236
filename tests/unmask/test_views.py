"""The views of a face's crop (``unmask.views``): their geometry, stage 1's union over them and their mirror
images, and stage 2's fill from the tightest view that holds the map. Stub networks: geometry, not learning."""

import numpy as np
import pytest

from unmask import views

R = 64


def test_every_view_sits_exactly_in_the_canvas_s_centre():
    size = views.canvas_size(R, views.WIDE_VIEW)
    assert (size - R) % 2 == 0 and size >= R * views.WIDE_VIEW - 1
    assert views.view_box(size, 1.0, R) == ((size - R) // 2, R)
    for side in (*views.VIEWS, views.WIDE_VIEW):
        offset, length = views.view_box(size, side, R)
        assert 2 * offset + length == size and abs(length - R * side) <= 2
    canvas = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
    centre = (size - R) // 2
    np.testing.assert_array_equal(views.cut(canvas, 1.0, R), canvas[centre:centre + R, centre:centre + R])
    assert views.cut(canvas, views.WIDE_VIEW, R).shape == (R, R, 3)


def _stub(shape):
    def stage1(crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        ys, xs = np.mgrid[0:R, 0:R] / R
        if shape == "left":  # a disc left of the middle: its mirror image is right of it
            one = (ys - 0.5) ** 2 + (xs - 0.4) ** 2 < 0.05 ** 2
        else:  # the lower part: runs off every view's edge
            one = ys > 0.6
        return np.repeat((one * 255).astype(np.uint8)[None], n, axis=0)
    return stage1


def test_stage_1_s_map_is_the_union_of_the_views_and_their_mirror_images():
    size = views.canvas_size(R, views.WIDE_VIEW)
    canvas = np.zeros((size, size, 3), np.uint8)
    valid = np.full((size, size), 255, np.uint8)
    plain = views.predict_map(canvas, valid, _stub("left"), R, mirror=False)
    mirrored = views.predict_map(canvas, valid, _stub("left"), R, mirror=True)
    middle = size // 2
    assert plain[:, :middle].any() and not plain[:, middle + 1:].any()
    np.testing.assert_array_equal(mirrored, mirrored[:, ::-1] | plain)  # left and right, as mirror images
    # Past the photo (valid 0) nothing is masked.
    valid[:, : size // 2] = 0
    assert not views.predict_map(canvas, valid, _stub("left"), R)[:, : size // 2].any()


def test_the_wide_view_is_added_only_where_the_views_map_reaches_the_loosest_one_s_edge():
    size = views.canvas_size(R, views.WIDE_VIEW)
    canvas = np.zeros((size, size, 3), np.uint8)
    valid = np.full((size, size), 255, np.uint8)
    calls = []

    def counting(stub):
        def stage1(crops):
            calls.append(len(crops))
            return stub(crops)
        return stage1

    views.predict_map(canvas, valid, counting(_stub("left")), R)
    assert calls == [2 * len(views.VIEWS)]
    calls.clear()
    lower = views.predict_map(canvas, valid, counting(_stub("lower")), R)
    assert calls == [2 * len(views.VIEWS), 2] and lower[-1].all()  # the wide view reaches the crop's bottom


# 1.7: the whole canvas
@pytest.mark.parametrize("reach,expected", [(0.3, 1.0), (0.55, 1.2), (0.69, 1.44), (0.84, 1.7), (0.99, 1.7)])
def test_stage_2_fills_from_the_tightest_view_that_holds_the_map(reach, expected):
    size = views.canvas_size(R, views.WIDE_VIEW)
    grown = np.zeros((size, size), np.uint8)
    centre = size // 2
    half = round(reach * R)
    grown[centre:centre + 1, centre - 1:min(size, centre + half)] = 255
    assert views.fill_side(grown, R, (*views.VIEWS, views.WIDE_VIEW)) == expected


def test_the_fill_changes_only_the_grown_map_and_takes_the_training_crop_s_own_fill_inside_it():
    size = views.canvas_size(R, views.WIDE_VIEW)
    rng = np.random.default_rng(1)
    canvas = rng.integers(0, 256, (size, size, 3), np.uint8)
    crop_map = np.zeros((size, size), np.uint8)
    crop_map[size // 2:size - 2, 4:size - 4] = 255  # past the training crop on three sides
    grown = crop_map.copy()
    runs = []

    def stage2(crops, maps):  # fills each view with one grey per run: which view filled a pixel shows
        runs.append(len(crops))
        return np.stack([np.full_like(c, 50 + 100 * k) for k, c in enumerate(crops)])

    out = views.fill(canvas, crop_map, grown, stage2, R)
    assert runs == [2]  # the loose view that holds the map, then the training crop
    np.testing.assert_array_equal(out[grown == 0], canvas[grown == 0])
    centre = (size - R) // 2
    inner = out[centre + 5:centre + R - 5, centre + 5:centre + R - 5]
    inner_map = grown[centre + 5:centre + R - 5, centre + 5:centre + R - 5] > 0
    assert (inner[inner_map] == 150).all()  # the training crop's own fill
    outside = grown.copy()
    outside[centre:centre + R, centre:centre + R] = 0
    assert (out[outside > 0] == 50).all()  # the loose view's fill, past the training crop: no square edge


def test_only_the_pieces_of_the_map_that_touch_the_training_crop_s_own_map_are_kept():
    union = np.zeros((40, 40), np.uint8)
    own = np.zeros_like(union)
    union[10:20, 10:20] = 255  # the mask on the face, its own view sees part of it
    own[12:15, 12:15] = 255
    union[19:30, 15:18] = 255  # ... running on down the neck: one piece with it
    union[34:38, 2:30] = 255  # a dark shirt below, apart: only a looser view saw it
    kept = views.attached(union, own)
    assert kept[10:30].sum() == union[10:30].sum() and not kept[34:].any()
    assert views.attached(union, np.zeros_like(own)) is union  # no own map: nothing to tell them apart

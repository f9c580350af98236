"""Every face of a real photo: found, unmasked and pasted back only where its map is; nothing from past the
photo's edge reaches the networks' input or the photo; ``refill`` on an edited map. Untrained tiny models
(64 px): these are properties of the geometry and the paste, not of what the networks learnt."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskgen.align import align_face, inside_photo, map_to_crop, map_to_photo, paste_back
from maskgen.landmarks import NoFace, detect_all
from maskgen.source import load_image
from tests.unmask.testutils import tiny_config
from unmask.models import Generator, MSeg
from unmask.predict import MAP_DILATION, FaceResult, Unmasker, UnmaskResult, grow_maps
from unmask.views import VIEWS, WIDE_VIEW, canvas_size

RES = 64
GROUP = "0761.jpg"  # three people side by side (two found by HOG, one by BlazeFace only)
ONE_FACE = "0000.jpg"  # one large face in the middle of the photo
FEATHER = 0.03  # paste_back's default seam, of the crop size


@pytest.fixture(scope="module")
def unmasker() -> Unmasker:
    """Faces cut out at the bare training crop (no context): the geometry of the paste, crop by crop."""
    torch.manual_seed(0)
    cfg = tiny_config(**{"train.resolution": RES})
    return Unmasker(Generator(cfg.generator), MSeg(cfg.mseg), cfg, views=(1.0,), wide_view=None, mirror=False)


@pytest.fixture(scope="module")
def group(real_masked_dir) -> np.ndarray:
    return load_image(real_masked_dir / GROUP, max_side=None)


@pytest.fixture(scope="module")
def group_result(unmasker, group) -> UnmaskResult:
    return unmasker(group)


def _lower_face() -> np.ndarray:
    """A crop map over where the canonical crop has mouth and chin."""
    crop_map = np.zeros((RES, RES), np.uint8)
    cv2.ellipse(crop_map, (RES // 2, int(0.72 * RES)), (RES // 4, RES // 6), 0, 0, 360, 255, -1)
    return crop_map


def _reach(face: FaceResult, crop_map: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The photo pixels a paste of ``crop_map`` can change: the region stage 2 filled (the map grown) dilated
    as the paste dilates it, plus the feathered seam's blur (its Gaussian reaches twice the seam's radius),
    plus a pixel of interpolation."""
    margin = max(1, int(MAP_DILATION * RES)) + 2 * max(1, int(FEATHER * RES)) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2)
    on_photo = map_to_photo(cv2.dilate(grow_maps(crop_map), disc), face.matrix, shape)
    return cv2.dilate(on_photo, np.ones((5, 5), np.uint8)) > 0


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_every_face_is_found_unmasked_and_pasted_and_nothing_outside_the_maps_changes(unmasker, group, group_result):
    result = group_result
    faces = result.faces
    assert len(faces) >= 2, [f.box for f in faces]
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    h, w = group.shape[:2]
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert face.points.shape == (5, 2) and x0 <= face.points[:, 0].mean() <= x1
        assert face.crop_input.shape == (RES, RES, 3) and face.crop_map.shape == face.valid.shape == (RES, RES)
        assert set(np.unique(face.crop_map)) <= {0, 255} and 0.0 <= face.coverage <= 1.0 and face.seconds > 0
    # The old fields: the largest face's crops, and the union of every face's map.
    assert result.crop_input is faces[0].crop_input and result.matrix is faces[0].matrix
    union = np.zeros(group.shape[:2], bool)
    for face in faces:
        union |= map_to_photo(face.crop_map, face.matrix, group.shape) > 0
    np.testing.assert_array_equal(result.map > 0, union)
    reach = np.zeros_like(union)
    for face in faces:
        reach |= _reach(face, face.crop_map, group.shape)
    assert not _changed(result.image, group)[~reach].any()

    # Each face with a map of its own is pasted, each only near its map.
    refilled = [unmasker.refill(group, face, _lower_face()) for face in faces]
    pasted = unmasker.paste(group, refilled)
    changed = _changed(pasted, group)
    reach = np.zeros_like(union)
    for face in refilled:
        x0, y0, x1, y1 = face.box
        assert changed[y0:y1, x0:x1].any(), face.box
        reach |= _reach(face, face.crop_map, group.shape)
    assert not changed[~reach].any()


def test_max_faces_keeps_the_largest_and_min_face_says_why_none_is_left(unmasker, group, group_result):
    every = group_result
    (largest,) = unmasker(group, max_faces=1).faces
    assert largest.box == every.faces[0].box
    smallest = min(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in every.faces)
    assert len(unmasker(group, min_face=smallest + 1).faces) < len(every.faces)
    with pytest.raises(NoFace, match=rf"no face of at least 10000 px \(--min-face; {len(every.faces)} smaller found\)"):
        unmasker(group, min_face=10000)


@pytest.fixture(scope="module")
def edge_photo(real_masked_dir) -> np.ndarray:
    """A photo cut through the face's cheek: its crop reaches past the photo's left edge."""
    return np.ascontiguousarray(load_image(real_masked_dir / ONE_FACE, max_side=None)[:, 140:])


def test_past_the_edge_the_networks_see_the_edge_repeated_not_a_mirrored_face(unmasker, edge_photo):
    (face,) = unmasker(edge_photo).faces
    outside = face.valid == 0
    assert 0.05 < outside.mean() < 0.6
    (found,) = detect_all(edge_photo)
    mirrored = align_face(edge_photo, found.points, RES, fill="reflect").image
    np.testing.assert_array_equal(align_face(edge_photo, found.points, RES, fill="edge").image, face.crop_input)
    inner = cv2.erode(face.valid, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    np.testing.assert_array_equal(face.crop_input[inner], mirrored[inner])
    # What lies past the edge comes from the edge: the photo changed from a few pixels in from its edges leaves it as it
    # was, where the reflection copies the change (a mirrored face, in a real photo).
    changed = edge_photo.copy()
    changed[8:-8, 8:-8] = 255 - changed[8:-8, 8:-8]
    far = cv2.erode(outside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    edge_after = align_face(changed, found.points, RES, fill="edge").image
    mirrored_after = align_face(changed, found.points, RES, fill="reflect").image
    np.testing.assert_array_equal(edge_after[far], face.crop_input[far])
    assert _changed(mirrored_after, mirrored)[far].mean() > 0.9


def test_nothing_from_past_the_photo_is_pasted(unmasker, edge_photo):
    (face,) = unmasker(edge_photo).faces
    face = unmasker.refill(edge_photo, face, np.full((RES, RES), 255, np.uint8))  # the whole crop: up to the edge
    outside = face.valid[..., None] == 0
    black, white = (dataclasses.replace(face, crop_output=np.where(outside, value, face.crop_output).astype(np.uint8))
                    for value in (0, 255))
    pasted = unmasker.paste(edge_photo, [black])
    assert _changed(pasted, edge_photo)[:, 0].any()  # the face is pasted right up to the edge
    np.testing.assert_array_equal(pasted, unmasker.paste(edge_photo, [white]))
    # Without the validity mask, the interpolation at the edge would read the pixels past it.
    region = np.ones((RES, RES), np.float32)
    assert _changed(paste_back(edge_photo, black.crop_output, face.matrix, region),
                    paste_back(edge_photo, white.crop_output, face.matrix, region)).any()


def test_refill_changes_the_output_only_inside_the_dilated_edited_map(unmasker, group, group_result):
    face = group_result.faces[0]
    edited = np.zeros(group.shape[:2], np.uint8)
    mouth = face.points[3:].mean(axis=0)
    cv2.circle(edited, (round(mouth[0]), round(mouth[1])), round(0.25 * (face.box[2] - face.box[0])), 255, -1)
    refilled = unmasker.refill(group, face, edited)
    assert refilled.box == face.box and refilled.crop_input is face.crop_input
    assert 0.05 < refilled.coverage < 0.5 and set(np.unique(refilled.crop_map)) == {0, 255}
    changed = _changed(unmasker.paste(group, [refilled]), group)
    assert changed.any() and not changed[~_reach(refilled, refilled.crop_map, group.shape)].any()
    # The edited map (grown by MAP_GROWTH) is where the photo changes: away from it, the output crop is the
    # input crop (MURF).
    kept = grow_maps(refilled.crop_map) == 0
    np.testing.assert_array_equal(refilled.crop_output[kept], face.crop_input[kept])
    # The same map given at the crop's size (here as bool) gives the same face.
    again = unmasker.refill(group, face, refilled.crop_map > 0)
    np.testing.assert_array_equal(again.crop_output, refilled.crop_output)


@pytest.mark.parametrize("shape", [(5, 7), (RES, RES + 1), (100, 100, 3)])
def test_refill_refuses_a_map_of_another_size_naming_both_sizes(unmasker, group, group_result, shape):
    face = group_result.faces[0]
    h, w = group.shape[:2]
    size = "x".join(map(str, (shape[1], shape[0], *shape[2:])))
    with pytest.raises(ValueError, match=rf"^edited map is {size}: draw it at the photo's size \({w}x{h}\) or "
                                         rf"the crop's \({RES}x{RES}\)$"):
        unmasker.refill(group, face, np.zeros(shape, np.uint8))


def test_a_map_of_the_photo_s_size_is_in_photo_coordinates_even_when_the_photo_is_r_by_r(unmasker, group_result):
    # A face found in a photo of the crop's own size: a map of that size is drawn on the photo.
    photo = np.random.default_rng(0).integers(0, 256, (RES, RES, 3), np.uint8)
    matrix = np.array([[1.5, 0.0, -16.0], [0.0, 1.5, -20.0]])  # photo -> crop: the face zoomed in
    face = dataclasses.replace(group_result.faces[0], matrix=matrix, crop_input=photo,
                               valid=inside_photo(matrix, RES, photo.shape))
    edited = np.zeros((RES, RES), np.uint8)
    edited[30:40, 20:50] = 255
    refilled = unmasker.refill(photo, face, edited)
    np.testing.assert_array_equal(refilled.crop_map, np.minimum(map_to_crop(edited, matrix, RES), face.valid))
    np.testing.assert_array_equal(unmasker.refill_crop(face, edited).crop_map, np.minimum(edited, face.valid))


def test_faces_of_equal_area_are_pasted_so_that_the_first_given_ends_on_top(unmasker, group, group_result):
    face = group_result.faces[0]
    black, white = (dataclasses.replace(face, crop_map=np.full((RES, RES), 255, np.uint8),
                                        crop_output=np.full((RES, RES, 3), value, np.uint8)) for value in (0, 255))
    x0, y0, x1, y1 = face.box
    centre = (y0 + y1) // 2, (x0 + x1) // 2
    assert (unmasker.paste(group, [black, white])[centre] == 0).all()
    assert (unmasker.paste(group, [white, black])[centre] == 255).all()


def test_results_jsonl_names_every_output_written_for_each_face(unmasker, real_masked_dir, tmp_path):
    from unmask.predict import plan_outputs
    from unmask.predict_files import predict_files

    plan, _ = plan_outputs([real_masked_dir / ONE_FACE], tmp_path / "out")
    predict_files(unmasker, plan, results=tmp_path / "out" / "results.jsonl", save_crops=True, save_maps=True,
                  compare=True)
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    outputs = {key: record[key] for key in ("image", "map", "compare", "crop_input", "crop_output", "crop_map")}
    assert all(Path(path).is_file() for path in outputs.values()), outputs
    assert len(set(outputs.values())) == 6


def test_an_aligned_crop_is_one_face_covering_it(unmasker, group):
    crop = cv2.resize(group[:RES * 2, :RES * 2], (RES, RES), interpolation=cv2.INTER_AREA)
    result = unmasker(crop, aligned=True)
    (face,) = result.faces
    assert result.aligned and face.box == (0, 0, RES, RES) and (face.valid == 255).all()
    np.testing.assert_array_equal(result.image, face.crop_output)
    np.testing.assert_allclose(face.matrix, [[1, 0, 0], [0, 1, 0]])


# --- context: the face crop, what lies around it, and the views of it the networks see ----------------------

class _FixedMaps(torch.nn.Module):
    """A stage 1 that draws the same shape on every view, in shares of its size: ``"blob"`` a disc in the
    middle (inside the face crop), ``"lower"`` the whole lower part (a gaiter running off every edge). It
    records the size of each batch of views it is given."""

    def __init__(self, shape: str):
        super().__init__()
        self.shape, self.seen = shape, []

    def predict_map(self, x: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        self.seen.append(tuple(x.shape))
        ys, xs = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
        inside = ((ys - 0.5) ** 2 + (xs - 0.5) ** 2 < 0.1 ** 2) if self.shape == "blob" else ys > 0.6
        return inside.float().expand(n, 1, h, w).clone()


def _context_unmasker(shape: str) -> Unmasker:
    torch.manual_seed(0)
    cfg = tiny_config(**{"train.resolution": RES})
    return Unmasker(Generator(cfg.generator), _FixedMaps(shape), cfg)


@pytest.fixture(scope="module")
def one_face(real_masked_dir) -> np.ndarray:
    return load_image(real_masked_dir / ONE_FACE, max_side=None)


def test_a_face_is_cut_out_with_context_and_stage_1_sees_each_view_at_the_training_size(one_face):
    unmasker = _context_unmasker("blob")
    (face,) = unmasker(one_face).faces
    size = canvas_size(RES, WIDE_VIEW)
    margin = (size - RES) // 2
    assert face.margin == unmasker.margin == margin > 0 and face.crop_input.shape == (size, size, 3)
    # every view and its mirror image at R x R, in one batch; no wide view: the map fits in the loosest
    assert unmasker.mseg.seen == [(2 * len(VIEWS), 3, RES, RES)]
    (found,) = detect_all(one_face)
    bare = align_face(one_face, found.points, RES, fill="edge")
    assert bare.scale <= 1  # a plain warp: the centre of the larger crop is the training crop exactly
    np.testing.assert_array_equal(face.crop_input[margin:-margin, margin:-margin], bare.image)
    # The map is the union of the views' discs: the loosest view's, largest on the crop, holds the others.
    ys, xs = np.nonzero(face.crop_map)
    radius = (ys.max() - ys.min() + 1) / 2
    assert radius == pytest.approx(0.1 * RES * max(VIEWS), abs=1.5)
    # The coverage counts the face crop (the centre), not the context.
    centre = face.crop_map[margin:-margin, margin:-margin]
    assert face.coverage == pytest.approx((centre > 0).mean())
    record = face.record()
    assert record["crop_size"] == size and not record["map_at_crop_edge"] and not record["map_at_photo_edge"]


def test_a_map_that_reaches_the_loosest_view_s_edge_adds_the_wide_view_and_is_filled_past_the_face_crop(one_face):
    unmasker = _context_unmasker("lower")
    photo = cv2.copyMakeBorder(one_face, 400, 400, 400, 400, cv2.BORDER_CONSTANT, value=(90, 120, 150))
    result = unmasker(photo)
    (face,) = result.faces
    assert unmasker.mseg.seen == [(2 * len(VIEWS), 3, RES, RES), (2, 3, RES, RES)]
    assert (face.valid > 0).all()  # the crop lies on the photo: its edge is the crop's
    assert face.map_at_crop_edge and face.record()["map_at_crop_edge"]  # even the widest view does not hold it
    assert not face.map_at_photo_edge
    # The photo changes outside the face crop's footprint: the whole map is filled, not a square of it.
    m = face.margin
    footprint = np.zeros(face.crop_map.shape, np.uint8)
    footprint[m:-m, m:-m] = 255
    outside_face_crop = map_to_photo(footprint, face.matrix, photo.shape) == 0
    changed = _changed(result.image, photo)
    assert changed[outside_face_crop].sum() > 0.5 * changed[~outside_face_crop].sum()
    assert (result.map > 0)[outside_face_crop].any()
    # Outside the map (grown) the crop's output is its input.
    kept = grow_maps(face.crop_map, RES) == 0
    np.testing.assert_array_equal(face.crop_output[kept], face.crop_input[kept])


def test_a_map_cut_by_the_photo_s_edge_is_reported(edge_photo):
    (face,) = _context_unmasker("lower")(edge_photo).faces
    assert face.map_at_photo_edge and face.record()["map_at_photo_edge"]
    (face,) = _context_unmasker("blob")(edge_photo).faces
    assert not face.map_at_photo_edge


def test_bare_crops_keep_the_training_crop_s_size(unmasker, group_result):
    assert unmasker.margin == 0
    assert all(face.margin == 0 and face.crop_map.shape == (RES, RES) for face in group_result.faces)

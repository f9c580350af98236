"""Triplet invariants on real CelebA faces."""

import numpy as np
import pytest

from maskgen.compose import MaskOptions, encode, image_to_triplets
from maskgen.landmarks import detect, five_points, from_five_points
from maskgen.source import load_image
from maskgen.templates import MASK_TYPES


@pytest.fixture(scope="module")
def faces(celeba_images):
    return celeba_images[:: max(1, len(celeba_images) // 24)][:24]


def _check_triplet(t, res):
    assert t.masked.shape == t.unmasked.shape == (res, res, 3)
    assert t.map.shape == (res, res) and t.map.dtype == np.uint8
    assert set(np.unique(t.map)) <= {0, 255}
    changed = np.any(t.masked != t.unmasked, axis=2)
    inside = t.map > 0
    # Outside the map the masked image is exactly the unmasked one (before encoding) ...
    assert not np.any(changed & ~inside)
    # ... and inside it the mask really replaces the face.
    assert changed[inside].mean() > 0.9
    # A face mask covers a plausible share of an aligned face crop.
    assert 0.05 < t.meta.coverage < 0.40
    assert abs(t.meta.coverage - inside.mean()) < 1e-6
    lm = np.asarray(t.meta.landmarks)
    assert lm.shape == (68, 2) and np.all((lm >= 0) & (lm < res))
    # The map covers the mouth and the nose tip, and not the eyes.
    ys, xs = np.round(lm[48:68, 1]).astype(int), np.round(lm[48:68, 0]).astype(int)
    assert inside[ys, xs].mean() > 0.9
    eye_y, eye_x = np.round(lm[36:48, 1]).astype(int), np.round(lm[36:48, 0]).astype(int)
    assert inside[eye_y, eye_x].mean() == 0


@pytest.mark.parametrize("res", [128, 256, 512])
def test_triplet_invariants_on_real_faces(faces, res):
    n_ok = 0
    for i, path in enumerate(faces[:8]):
        for t in image_to_triplets(path, n=2, res=res, seed=i):
            _check_triplet(t, res)
            n_ok += 1
    assert n_ok == 16


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_every_mask_type(faces, kind):
    opts = MaskOptions.create([kind])
    for i, path in enumerate(faces[:4]):
        (t,) = image_to_triplets(path, n=1, res=256, seed=i, options=opts)
        assert t.meta.mask_type == kind
        _check_triplet(t, 256)


def test_masktheface_pack(faces, template_pack):
    opts = MaskOptions.create(templates=template_pack)
    seen = set()
    for i, path in enumerate(faces[:12]):
        (t,) = image_to_triplets(path, n=1, res=256, seed=i, options=opts)
        _check_triplet(t, 256)
        assert t.meta.color == "template"
        seen.add(t.meta.template)
    assert len(seen) >= 3


def test_same_seed_same_bytes_other_seed_other_mask(faces):
    a = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=7)]
    b = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=7)]
    c = [encode(t) for t in image_to_triplets(faces[0], n=3, res=256, seed=8)]
    assert a == b
    assert [x["masked.jpg"] for x in a] != [x["masked.jpg"] for x in c]
    # The variants of one face differ from each other.
    assert len({x["masked.jpg"] for x in a}) == 3


def test_landmarks_from_a_celeba_five_point_row_match_detection(faces):
    errors = []
    for path in faces[:10]:
        image = load_image(path)
        found = detect(image)
        placed = from_five_points(image, five_points(found.points))
        eye_dist = np.linalg.norm(found.points[42:48].mean(0) - found.points[36:42].mean(0))
        errors.append(np.abs(placed.points - found.points).mean() / eye_dist)
    # The box derived from 5 points lets the predictor find the same 68 points (within 10% of
    # the eye distance on average).
    assert np.median(errors) < 0.1, errors

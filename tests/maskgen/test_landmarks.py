"""Landmarks on real CelebA faces: the aligned-layout prior agrees with detection, and refuses non-faces."""

import cv2
import numpy as np
import pytest

from maskgen.face_points import eye_centers
from maskgen.landmarks import CELEBA_ALIGNED_PRIOR, CELEBA_ALIGNED_SHAPE, NoFace, detect, detect_all, from_prior, locate
from maskgen.source import discover, load_image


@pytest.fixture(scope="module")
def faces(celeba_images):
    return [load_image(p) for p in celeba_images[:40:2]]


def _eye_distance(points):
    left, right = eye_centers(points)
    return float(np.linalg.norm(right - left))


def test_prior_landmarks_agree_with_detected_ones(faces):
    errors, used = [], 0
    for image in faces:
        assert image.shape[:2] == CELEBA_ALIGNED_SHAPE
        found = locate(image, prior=CELEBA_ALIGNED_PRIOR)
        detected = detect(image)
        used += found.method == "celeba-prior"
        errors.append(np.abs(found.points - detected.points).mean() / _eye_distance(detected.points))
    assert used >= 0.85 * len(faces)  # the prior is the fast path for nearly every aligned face
    assert np.median(errors) < 0.03 and np.percentile(errors, 90) < 0.08


@pytest.mark.parametrize("name", ["blank", "noise", "upside_down_gradient"])
def test_prior_finds_no_face_in_faceless_images(name):
    h, w = CELEBA_ALIGNED_SHAPE
    rng = np.random.default_rng(0)
    image = {"blank": np.full((h, w, 3), 128, np.uint8),
             "noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
             "upside_down_gradient": np.repeat(np.linspace(255, 0, h, dtype=np.uint8)[:, None, None], w, 1)
             .repeat(3, 2)}[name]
    assert from_prior(image, CELEBA_ALIGNED_PRIOR) is None
    with pytest.raises(NoFace):
        locate(image, prior=CELEBA_ALIGNED_PRIOR)


def test_prior_is_not_used_where_the_face_is_elsewhere_or_the_size_differs(faces):
    image = faces[0]
    shifted = cv2.warpAffine(image, np.float32([[1, 0, 45], [0, 1, 35]]), image.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT_101)
    assert from_prior(shifted, CELEBA_ALIGNED_PRIOR) is None
    assert locate(shifted, prior=CELEBA_ALIGNED_PRIOR).method.startswith("hog")
    padded = cv2.copyMakeBorder(image, 20, 20, 20, 20, cv2.BORDER_REFLECT_101)
    assert from_prior(padded, CELEBA_ALIGNED_PRIOR) is None


def test_only_the_aligned_celeba_layout_gets_the_prior(celeba_dir, tmp_path, celeba_images):
    assert all(im.prior5 is not None for im in discover(celeba_dir).images[:5])
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(celeba_images[0].read_bytes())
    assert discover(folder).images[0].prior5 is None


@pytest.mark.parametrize("shape", [(40, 90_000), (90_000, 40), (1, 5000)])
def test_a_very_long_thin_image_is_searched_without_a_library_error(shape):
    # the HOG pass's copy no larger than DETECT_MAX_SIDE once shrank the short side to 0 px (a cv2 assertion)
    assert detect_all(np.full((*shape, 3), 128, np.uint8)) == []

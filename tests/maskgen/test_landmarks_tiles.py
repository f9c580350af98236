"""detect_all's tiled BlazeFace pass: more of a crowd's small faces, none on the body under a face or in portraits."""

import cv2
import pytest

from maskgen import blazeface, landmarks
from tests.testdata import REAL_MASKED

pytestmark = pytest.mark.skipif(not blazeface.available(), reason="BlazeFace models not installed")


def _photo(name):
    path = REAL_MASKED / name
    if not path.is_file():
        pytest.skip(f"shared photo not found: {path}")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_tiles_find_small_faces_of_a_crowd(monkeypatch):
    crowd = _photo("0969.jpg")  # ~25 small masked faces; the whole-photo passes find none
    tiled = landmarks.detect_all(crowd)
    monkeypatch.setattr(landmarks, "_may_hold_small_faces", lambda image, found: False)
    untiled = landmarks.detect_all(crowd)
    assert len(tiled) >= len(untiled) + 3
    assert any(face.method == "blazeface-tiles" for face in tiled)


def test_portrait_skips_tiles(monkeypatch):
    portrait = _photo("0000.jpg")
    calls = []
    monkeypatch.setattr(blazeface, "detect_faces_tiled", lambda *a, **k: calls.append(a) or [])
    assert len(landmarks.detect_all(portrait)) == 1
    assert calls == []


def test_box_under_a_face_is_its_body():
    face = (100, 100, 140, 140)
    assert landmarks._on_body_below((110, 180, 130, 200), face)  # a badge on the coat below
    assert not landmarks._on_body_below((110, 30, 130, 50), face)  # a person behind, higher up
    assert not landmarks._on_body_below((90, 180, 150, 240), face)  # a larger face in front
    assert not landmarks._on_body_below((300, 180, 320, 200), face)  # beside, not under


def test_tile_faces_are_in_photo_coordinates():
    crowd = _photo("0850.jpg")
    faces = blazeface.detect_faces_tiled(crowd, 144)
    h, w = crowd.shape[:2]
    assert len(faces) >= 8
    for face in faces:
        assert -20 <= face.box[0] < face.box[2] <= w + 20 and -20 <= face.box[1] < face.box[3] <= h + 20

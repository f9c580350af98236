"""``unmask serve`` over HTTP (starlette's TestClient): a real photo end to end, every bad input refused
with its message, the cache's bound, the command's own errors. The browser test is test_serve_browser.py.

The model is untrained and tiny, with stage 1's threshold above any probability: every predicted map is
empty, so the first result is the photo itself and after a re-run the map is exactly what the test drew.
The tests of editing a map that is not empty give stage 1 a map of their own (``first_maps``).
"""

from __future__ import annotations

import base64
import inspect
import io
import math
import socket

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from maskgen.align import paste_back
from maskgen.source import MAX_PIXELS, load_image
from tests.maskgen.test_bad_input import png_header_only
from tests.testdata import REAL_MASKED
from tests.unmask.testutils import tiny_config
from unmask.cli import main
from unmask.models import Generator, MSeg
from unmask.predict import MAP_DILATION, MAP_GROWTH, Unmasker

pytest.importorskip("starlette", reason="unmask serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx2", reason="starlette's TestClient needs httpx2: pip install -e '.[dev]'")

from starlette.testclient import TestClient  # noqa: E402

from unmask.serve.app import create_app  # noqa: E402
from unmask.serve.editing import MAX_PHOTO_PIXELS, EditedPhoto, PhotoCache  # noqa: E402

PHOTO = REAL_MASKED / "0000.jpg"  # one masked face, 512 x 453
ORIGIN = "http://127.0.0.1:7860"  # the page's own address: the Host every test request names


def tiny_unmasker(resolution: int = 64, **kwargs) -> Unmasker:
    """Untrained networks whose stage 1 never marks a pixel (threshold above any probability)."""
    torch.manual_seed(0)
    config = tiny_config(**{"train.resolution": resolution})
    return Unmasker(Generator(config.generator), MSeg(config.mseg), config, threshold=1.1, **kwargs)


def need_photo(path=PHOTO):
    if not path.is_file():
        pytest.skip(f"shared test data not found at {path} (set GANMASKER_SHARED_DATA or provide ../shared/data)")
    return path


def paste_margin(unmasker: Unmasker, matrix: np.ndarray) -> int:
    """How far (photo px) a pasted face reaches past its map: stage 2's growth of the map, the paste's
    dilation and feather (its blur reaches two feather radii), in crop px, at the crop's scale; plus
    interpolation."""
    r = unmasker.resolution
    feather = inspect.signature(paste_back).parameters["feather"].default
    crop_px = max(1, round(MAP_GROWTH * r)) + max(1, int(MAP_DILATION * r)) + 2 * max(1, int(feather * r)) + 2
    return math.ceil(crop_px / math.sqrt(abs(np.linalg.det(matrix[:, :2])))) + 1


def changed_only_near(result: np.ndarray, photo: np.ndarray, edited_map: np.ndarray, margin: int) -> None:
    """``result`` differs from ``photo`` only within ``margin`` px of the map, and does inside it."""
    changed = np.abs(result.astype(int) - photo.astype(int)).max(axis=2) > 0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2)
    near = cv2.dilate(edited_map, disc) > 0
    assert changed.any() and not (changed & ~near).any(), f"{(changed & ~near).sum()} px changed far from the map"
    inside = edited_map > 0
    assert changed[inside].mean() > 0.9  # stage 2's output replaces the photo there


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def unmasker() -> Unmasker:
    return tiny_unmasker()


@pytest.fixture(scope="module")
def client(unmasker) -> TestClient:
    return TestClient(create_app(unmasker), base_url=ORIGIN)


@pytest.fixture(scope="module")
def uploaded(client) -> dict:
    response = client.post("/api/photos", content=need_photo().read_bytes())
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_its_script_and_its_limits_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/limits").json()["max_pixels"] == MAX_PHOTO_PIXELS


def test_a_real_photo_is_unmasked_and_refilled_only_inside_the_edited_map(client, uploaded, unmasker):
    photo = load_image(PHOTO, max_side=None)
    h, w = photo.shape[:2]
    assert (uploaded["width"], uploaded["height"]) == (w, h)
    assert (uploaded["map_width"], uploaded["map_height"]) == (w, h)
    (face,) = uploaded["faces"]
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and face["coverage"] == 0
    first_map = decoded(base64.b64decode(uploaded["map"].split(",", 1)[1]))
    assert first_map.shape == (h, w) and not first_map.any()
    first = client.get(f"/api/photos/{uploaded['id']}/result.png")
    assert first.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decoded(first.content), photo)  # an empty map changes nothing

    edited = np.zeros((h, w), np.uint8)
    cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
    edited[cy:cy + 40, cx - 60:cx + 60] = 255  # the lower middle of the face
    response = client.post(f"/api/photos/{uploaded['id']}/refill", content=png(edited))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    (found,) = unmasker(photo, aligned=False).faces
    changed_only_near(decoded(response.content), photo, edited, paste_margin(unmasker, found.matrix))

    unchanged = client.post(f"/api/photos/{uploaded['id']}/refill", content=png(edited))
    assert unchanged.status_code == 422 and unchanged.json()["error"].startswith(  # the same map again
        "the edit changes no face's map since the last run"), unchanged.text
    back = client.post(f"/api/photos/{uploaded['id']}/refill", content=png(first_map))
    np.testing.assert_array_equal(decoded(back.content), photo)  # the first map: the first result, not re-run


def test_only_the_faces_whose_part_of_the_map_changed_run_again(client, unmasker, monkeypatch):
    photo = load_image(need_photo(), max_side=None)
    answer = client.post("/api/photos", content=png(np.hstack([photo, photo]))).json()  # two faces
    assert len(answer["faces"]) == 2, answer
    refilled = []
    refill = unmasker.refill_crop
    monkeypatch.setattr(unmasker, "refill_crop", lambda face, crop_map: refilled.append(face.box) or
                        refill(face, crop_map))
    for index, face in enumerate(answer["faces"]):
        x0, y0, x1, y1 = face["box"]
        edited = np.zeros((answer["map_height"], answer["map_width"]), np.uint8)
        centre_y, centre_x = round((y0 + y1) / 2), round((x0 + x1) / 2)
        edited[centre_y - 3:centre_y + 3, centre_x - 3:centre_x + 3] = 255
        response = client.post(f"/api/photos/{answer['id']}/refill", content=png(edited))
        assert response.status_code == 200
        assert refilled == [tuple(round(v) for v in face["box"])], index  # this face only
        refilled.clear()


BAD_PHOTOS = {
    "not an image": (lambda _: b"Hello, I am a text file.\n", 422,
                     "this file is not an image we can read (JPEG, PNG, WebP, BMP)"),
    "0 bytes": (lambda _: b"", 400, "empty upload: the file has 0 bytes"),
    "past the page's pixel limit": (lambda _: png_header_only(10_000, 5_001), 422,
                                    "image too large (10000x5001 px, 50,010,000 pixels): this page takes photos "
                                    "of at most 50,000,000 pixels (50 Mpx); make it smaller first"),
    "past PIL's own limit": (lambda _: png_header_only(30_000, 20_000), 422,
                             f"image too large (over {2 * MAX_PIXELS:,} pixels): this page takes photos"),
    "noise, no face": (lambda _: png(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)), 422,
                       "no face to unmask in this photo (no face detected)"),
}


@pytest.mark.parametrize("case", BAD_PHOTOS)
def test_a_bad_photo_is_refused_with_its_reason(client, request, case):
    make, status, message = BAD_PHOTOS[case]
    response = client.post("/api/photos", content=make(request))
    assert response.status_code == status and response.json()["error"].startswith(message), response.text


def test_an_upload_past_the_byte_limit_is_refused_before_it_is_read(unmasker):
    small = TestClient(create_app(unmasker, max_upload_bytes=1000), base_url=ORIGIN)
    response = small.post("/api/photos", content=bytes(1001))
    assert response.status_code == 413 and response.json()["error"] == "photo too large: over the limit of 1000 bytes"


def test_a_bad_map_or_photo_id_is_refused_with_its_reason(client, uploaded):
    url = f"/api/photos/{uploaded['id']}/refill"
    size = f"{uploaded['map_width']}x{uploaded['map_height']}"
    cases = [
        (client.post(url, content=png(np.zeros((100, 80), np.uint8))), 422,
         f"the map is 80x100 px; this photo's map is {size} px"),
        (client.post(url, content=need_photo().read_bytes()), 422, "the map must be a PNG image, not JPEG"),
        (client.post(url, content=b"\x89PNG not really"), 422, "the map is not a readable PNG image"),
        (client.post(url, content=png_header_only(30_000, 20_000)), 422,
         f"the map is 30000x20000 px; this photo's map is {size} px"),
        (client.post(url, content=b""), 400, "empty map"),
        (client.post("/api/photos/0123abcd/refill", content=b"x"), 404, "unknown photo id '0123abcd'"),
        (client.get("/api/photos/0123abcd/result.png"), 404, "unknown photo id '0123abcd'"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and response.json()["error"].startswith(message), response.text


def test_an_unexpected_failure_is_logged_and_answered_in_one_line(client, uploaded, unmasker, monkeypatch, caplog):
    def broken(*_args):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(unmasker, "refill_crop", broken)
    edited = np.full((uploaded["map_height"], uploaded["map_width"]), 255, np.uint8)
    response = client.post(f"/api/photos/{uploaded['id']}/refill", content=png(edited))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: the server could not do this; its log has the details"}
    assert "a bug" in caplog.text  # the log has the traceback; the page a line


def test_the_cache_keeps_the_last_photos_within_its_bounds():
    def photo(side: int) -> EditedPhoto:
        pixels = np.zeros((side, side, 3), np.uint8)
        return EditedPhoto(pixels, [], b"", pixels[..., 0])

    cache = PhotoCache(max_photos=2, max_bytes=10**9)
    first, second, third = photo(8), photo(8), photo(8)
    for item in (first, second):
        cache.add(item)
    cache.get(first.id)  # used: now the most recent
    cache.add(third)
    assert len(cache) == 2 and cache.get(first.id) is first
    with pytest.raises(Exception, match="unknown photo id"):
        cache.get(second.id)
    small = PhotoCache(max_photos=4, max_bytes=photo(100).nbytes * 2)
    kept = [photo(100) for _ in range(3)]
    for item in kept:
        small.add(item)
    assert len(small) == 2  # the byte bound
    huge = photo(300)
    small.add(huge)
    assert len(small) == 1 and small.get(huge.id) is huge  # the newest stays whatever its size


def test_serve_says_in_one_line_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--checkpoint", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in use "
                                     "(give another --port or --host)")


def test_serve_says_in_one_line_when_the_checkpoint_holds_no_model(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--checkpoint", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1 and result.output.strip() == f"Error: no checkpoints in {tmp_path / 'checkpoints'}"

"""``unmask serve``'s edits of a map that is not empty: stage 1 is given a map of the test's own
(``first_maps``), the page's edit must reach each face's crop map as a change (the stroked pixels only,
on every face they fall on), and an edit that changes no face is said. Also: a photo of the crop's own
size, a very long thin photo and one too narrow for the face search, the smooth map the page is sent,
the server's Host/Origin checks, its bound on waiting requests, uploads that stall (and Ctrl-C during a
long job), the last two against a real ``unmask serve`` process."""

from __future__ import annotations

import base64
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from maskgen.align import map_to_crop, map_to_photo
from maskgen.source import load_image
from tests.unmask.test_serve import ORIGIN, decoded, need_photo, png, tiny_unmasker
from unmask.cli import main
from unmask.predict import Unmasker

pytest.importorskip("starlette", reason="unmask serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx2", reason="starlette's TestClient needs httpx2: pip install -e '.[dev]'")

from starlette.testclient import TestClient  # noqa: E402

from unmask.serve.app import allowed_hosts, create_app  # noqa: E402
from unmask.serve.editing import EditError, open_photo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def lower_face(resolution: int) -> np.ndarray:
    """A crop map over where the canonical crop has mouth and chin."""
    crop_map = np.zeros((resolution, resolution), np.uint8)
    cv2.ellipse(crop_map, (resolution // 2, int(0.72 * resolution)), (resolution // 4, resolution // 6), 0, 0, 360,
                255, -1)
    return crop_map


def first_maps(monkeypatch, unmasker: Unmasker, *maps: np.ndarray) -> None:
    """Stage 1 predicts ``maps`` in turn, over and over: with as many maps as faces, each face of a photo
    (unmasked largest first, one at a time) has its own. The unmasker sees the training crop alone (BARE)."""
    turns = itertools.cycle(maps)
    monkeypatch.setattr(unmasker, "predict_maps", lambda crops: np.stack([next(turns) for _ in crops]))


class Refills:
    """What the page's edits did: the faces stage 2 ran on again (their first box) and the faces pasted."""

    def __init__(self, monkeypatch, unmasker: Unmasker):
        self.boxes: list[tuple] = []
        self.pasted: list = []
        refill, paste = unmasker.refill_crop, unmasker.paste
        monkeypatch.setattr(unmasker, "refill_crop", lambda face, crop_map: self.boxes.append(face.box) or
                            refill(face, crop_map))
        monkeypatch.setattr(unmasker, "paste", lambda photo, faces: self.pasted.append(list(faces)) or
                            paste(photo, faces))


# the training crop alone: the edits' geometry, crop by crop
BARE = {"views": (1.0,), "wide_view": None, "mirror": False}


@pytest.fixture
def unmasker() -> Unmasker:
    return tiny_unmasker(**BARE)


def upload(client: TestClient, photo: np.ndarray) -> tuple[dict, np.ndarray]:
    answer = client.post("/api/photos", content=png(photo))
    assert answer.status_code == 200, answer.text
    return answer.json(), decoded(base64.b64decode(answer.json()["map"].split(",", 1)[1]))


def refill(client: TestClient, answer: dict, edited: np.ndarray):
    return client.post(f"/api/photos/{answer['id']}/refill", content=png(edited))


def test_a_stroke_changes_only_the_stroked_pixels_of_each_crop_map(monkeypatch):
    # A small face: a crop pixel is finer than a photo pixel (1.8 a side), and a round trip crop -> photo ->
    # crop by nearest neighbour changed 90 of the map's crop pixels
    unmasker = tiny_unmasker(128, **BARE)
    photo = cv2.resize(load_image(need_photo(), max_side=None), None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    first_maps(monkeypatch, unmasker, lower_face(unmasker.resolution))
    (face,) = unmasker(photo, aligned=False).faces
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    answer, first_map = upload(client, photo)
    refills = Refills(monkeypatch, unmasker)
    stroke = np.zeros_like(first_map)
    x0, y0, x1, y1 = face.box
    stroke[y0 + 3:y0 + 8, x0 + 8:x1 - 8] = 255  # the forehead: outside the first map
    response = refill(client, answer, np.maximum(first_map, stroke))
    assert response.status_code == 200, response.text
    (pasted,) = refills.pasted
    stroked = map_to_crop(stroke, face.matrix, face.crop_map.shape[0]) > 0
    assert stroked.any() and (pasted[0].crop_map[stroked] == 255).all()
    np.testing.assert_array_equal(pasted[0].crop_map[~stroked], face.crop_map[~stroked])  # every other pixel kept


def test_erasing_where_one_face_s_map_spills_over_another_runs_that_face_again(unmasker, monkeypatch):
    # Two faces side by side, the right one smaller and near, its crop reaching over the left face's side.
    photo = load_image(need_photo(), max_side=None)[:, 100:412].copy()
    small_copy = cv2.resize(photo, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    photo = np.ascontiguousarray(np.hstack([photo[:, :250], np.pad(
        small_copy, ((0, photo.shape[0] - small_copy.shape[0]), (0, 0), (0, 0)), mode="edge")]))
    r = unmasker.resolution
    first_maps(monkeypatch, unmasker, lower_face(r), np.full((r, r), 255, np.uint8))  # the small face: all its crop
    big, small = unmasker(photo, aligned=False).faces
    assert big.box[2] < small.box[0], (big.box, small.box)
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    answer, first_map = upload(client, photo)
    ys, xs = np.mgrid[0:photo.shape[0], 0:photo.shape[1]]
    big_side, small_side = (np.hypot(xs - (f.box[0] + f.box[2]) / 2, ys - (f.box[1] + f.box[3]) / 2) /
                            np.hypot(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in (big, small))
    spill = (map_to_photo(small.crop_map, small.matrix, photo.shape) > 0) & (big_side < small_side)
    spill &= cv2.dilate(map_to_photo(big.crop_map, big.matrix, photo.shape), np.ones((9, 9), np.uint8)) == 0
    assert spill.sum() > 100  # the small face's map nearer the big face (in face sizes), away from the big one's
    refills = Refills(monkeypatch, unmasker)
    response = refill(client, answer, np.where(spill, 0, first_map).astype(np.uint8))
    assert response.status_code == 200, response.text
    assert refills.boxes == [small.box]  # the face whose map it was; the other one's map is unchanged
    erased = map_to_crop(spill.astype(np.uint8) * 255, small.matrix, small.crop_map.shape[0]) > 0
    assert erased.any() and not refills.pasted[0][1].crop_map[erased].any()


def test_an_edit_outside_every_face_s_crop_is_said_and_changes_nothing(unmasker, monkeypatch):
    photo = load_image(need_photo(), max_side=None)
    photo = np.ascontiguousarray(np.pad(photo, ((0, 0), (0, 600), (0, 0)), mode="edge"))  # a wide margin, no face
    first_maps(monkeypatch, unmasker, lower_face(unmasker.resolution))
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    answer, first_map = upload(client, photo)
    refills = Refills(monkeypatch, unmasker)
    edited = first_map.copy()
    edited[200:260, -100:-40] = 255  # far right: on no face's crop
    response = refill(client, answer, edited)
    assert response.status_code == 422 and response.json()["error"].startswith(
        "the edit changes no face's map since the last run: paint or erase over a face"), response.text
    assert refills.boxes == [] and refills.pasted == []
    (face,) = answer["faces"]
    x0, y0, x1, y1 = map(round, face["box"])
    edited[y0 + 10:y0 + 20, x0 + 20:x1 - 20] = 255  # and now on the face too: that face runs again
    assert refill(client, answer, edited).status_code == 200 and len(refills.boxes) == 1


def test_a_photo_of_the_crop_s_size_is_edited_in_photo_coordinates(monkeypatch):
    unmasker = tiny_unmasker(128, **BARE)
    photo = load_image(need_photo(), max_side=None)
    h, w = photo.shape[:2]
    side = min(h, w)
    photo = cv2.resize(photo[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2], (128, 128),
                       interpolation=cv2.INTER_AREA)
    first_maps(monkeypatch, unmasker, lower_face(128))
    (face,) = unmasker(photo, aligned=False).faces
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    answer, first_map = upload(client, photo)
    assert first_map.shape == (128, 128)
    refills = Refills(monkeypatch, unmasker)
    dab = np.zeros_like(first_map)
    x0, y0, x1, y1 = face.box
    dab[y0 + 4:y0 + 10, x0 + 15:x1 - 15] = 255  # the forehead
    assert refill(client, answer, np.maximum(first_map, dab)).status_code == 200
    want = np.where(map_to_crop(dab, face.matrix, face.crop_map.shape[0]) > 0, 255, face.crop_map)
    np.testing.assert_array_equal(refills.pasted[0][0].crop_map, np.minimum(want, face.valid))


def test_a_very_long_thin_photo_is_answered_without_an_internal_error(unmasker):
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    wide = np.random.default_rng(0).integers(0, 256, (100, 100_000, 3), np.uint8)
    response = client.post("/api/photos", content=png(wide))
    assert response.status_code in (200, 422), response.text  # found no face (or one), never a 500


def test_a_photo_whose_faces_are_all_too_small_says_so_without_naming_an_option(unmasker, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(need_photo().read_bytes())
    with pytest.raises(EditError, match=r"^no face to unmask in this photo: faces smaller than 10000 px are not "
                                        r"unmasked \(1 found\)$"):
        open_photo(unmasker, path, min_face=10000)


def test_requests_from_other_sites_and_other_host_names_are_refused(unmasker):
    app = create_app(unmasker)
    own = TestClient(app, base_url=ORIGIN)
    assert own.post("/api/photos", content=b"", headers={"Origin": ORIGIN}).status_code == 400  # served: empty
    cross = own.post("/api/photos", content=b"x", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and cross.json()["error"].startswith("refused: a page from http://evil.example")
    assert own.get("/api/limits", headers={"Origin": "http://evil.example"}).status_code == 200  # reads are harmless
    rebound = TestClient(app, base_url="http://attacker.example:7860")  # DNS rebinding: the attacker's name
    assert rebound.post("/api/photos", content=b"x").status_code == 400 and rebound.get("/").status_code == 400
    for name in ("localhost", "[::1]"):
        assert TestClient(app, base_url=f"http://{name}:7860").get("/api/limits").status_code == 200
    assert allowed_hosts("0.0.0.0") == ["*"] and "192.168.1.5" in allowed_hosts("192.168.1.5")
    assert "[fe80::1]" in allowed_hosts("fe80::1")


def test_requests_past_the_bound_are_told_the_server_is_busy(unmasker, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow(*_args, **_kwargs):
        started.set()
        release.wait(60)
        raise EditError(422, "released")

    monkeypatch.setattr("unmask.serve.app.open_photo", slow)
    with TestClient(create_app(unmasker, jobs=1), base_url=ORIGIN) as client:
        first: list = []
        thread = threading.Thread(target=lambda: first.append(client.post("/api/photos", content=b"photo")))
        thread.start()
        try:
            assert started.wait(60)
            busy = client.post("/api/photos", content=b"photo")
            assert busy.status_code == 503 and busy.json()["error"].startswith("busy: 1 requests"), busy.text
        finally:
            release.set()
            thread.join(60)
        assert first[0].status_code == 422
        assert client.post("/api/photos", content=b"").status_code == 400  # the slot is free again


def test_serve_warns_that_every_interface_means_anyone_on_the_network(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--checkpoint", str(tmp_path), "--host", "0.0.0.0", "--port", "0"])
    assert "warning: listening on every network interface (0.0.0.0): the page has no login" in result.output


SLOW_SERVE = """
import sys, threading
from tests.unmask.test_serve import tiny_unmasker
from unmask.predict import Unmasker
Unmasker.from_checkpoint = classmethod(lambda cls, *args, **kwargs: tiny_unmasker())
def stuck(self, *args, **kwargs):  # a job that would take minutes
    print("working", flush=True)
    threading.Event().wait()
Unmasker.__call__ = stuck
sys.argv = ["unmask", "serve", "--checkpoint", sys.argv[1], "--port", "0"]
from unmask.launch import main
main()
"""


@pytest.mark.slow
@pytest.mark.timing
def test_ctrl_c_stops_serve_at_once_during_a_long_job(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVE, str(tmp_path)], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = server.stdout.readline()
        assert line.startswith("unmask serve: open http://"), line + server.stderr.read()
        url = line.split()[3]
        import httpx2

        uploading = threading.Thread(target=lambda: _post_quietly(httpx2, url + "api/photos", need_photo()),
                                     daemon=True)
        uploading.start()
        assert server.stdout.readline() == "working\n"
        interrupted = time.monotonic()
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
        seconds = time.monotonic() - interrupted
    finally:
        server.kill()
    assert server.returncode == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr
    assert seconds < 10, seconds  # the stuck job is not waited for (it never ends)


def _post_quietly(httpx2, url: str, path: Path) -> None:
    try:
        httpx2.post(url, content=path.read_bytes(), timeout=60)
    except httpx2.HTTPError:
        pass  # the server stopped under it


@pytest.mark.parametrize("shape", [(40, 90_000), (90_000, 40)])
def test_a_very_narrow_photo_is_searched_and_answered_with_the_reason(unmasker, shape):
    # 3.6 Mpx, within the page's limits: maskgen's face search once shrank the 40 px side to 0 px (a cv2 assertion)
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    response = client.post("/api/photos", content=png(np.full((*shape, 3), 128, np.uint8)))
    assert response.status_code == 422 and response.json()["error"] == (
        "no face to unmask in this photo (no face detected)"), response.text


def test_the_page_is_sent_a_smooth_map_that_reads_back_as_the_first_map(unmasker, monkeypatch):
    # The 64 px crop is coarser than the face in the photo: enlarged by nearest neighbour its map's edges
    # would be stair steps of hard pixels; resampled bilinearly they are soft, and thresholded the same map
    first_maps(monkeypatch, unmasker, lower_face(unmasker.resolution))
    photo = load_image(need_photo(), max_side=None)
    (face,) = unmasker(photo, aligned=False).faces
    client = TestClient(create_app(unmasker), base_url=ORIGIN)
    answer, soft = upload(client, photo)
    edge = (soft > 0) & (soft < 255)
    assert edge.sum() > 0.5 * cv2.findContours((soft >= 128).astype(np.uint8), cv2.RETR_EXTERNAL,
                                               cv2.CHAIN_APPROX_NONE)[0][0].shape[0]  # soft all round
    nearest = map_to_photo(np.minimum(face.crop_map, face.valid), face.matrix, photo.shape) > 0
    on = soft >= 128
    assert (on & nearest).sum() / (on | nearest).sum() > 0.9  # the same map, its edges smoothed
    # Sent back unchanged (the page's alpha, read at the same level), it changes no face
    response = refill(client, answer, soft)
    assert response.status_code == 422 and "changes no face" in response.json()["error"], response.text


PLAIN_SERVE = """
import sys
from tests.unmask.test_serve import tiny_unmasker
from unmask.predict import Unmasker
Unmasker.from_checkpoint = classmethod(lambda cls, *args, **kwargs: tiny_unmasker())
sys.argv = ["unmask", "serve", "--checkpoint", sys.argv[1], "--port", "0"]
from unmask.launch import main
main()
"""


@pytest.mark.slow
def test_stalled_uploads_do_not_hold_the_job_slots(tmp_path):
    import http.client
    import socket
    import urllib.parse

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", PLAIN_SERVE, str(tmp_path)], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stalled = []
    try:
        line = server.stdout.readline()
        assert line.startswith("unmask serve: open http://"), line + server.stderr.read()
        address = urllib.parse.urlsplit(line.split()[3])
        for _ in range(4):  # headers and two bytes of a 100 kB body, then nothing
            sock = socket.create_connection((address.hostname, address.port), timeout=60)
            sock.sendall(f"POST /api/photos HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Length: 100000\r\n"
                         "Content-Type: image/jpeg\r\n\r\nab".encode())
            stalled.append(sock)
        started, photo = time.monotonic(), need_photo().read_bytes()
        while True:
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            connection.request("POST", "/api/photos", photo, {"Host": address.netloc})
            status = connection.getresponse().status
            connection.close()
            if status != 503 or time.monotonic() - started > 60:
                break
            time.sleep(1)
        seconds = time.monotonic() - started
        assert status == 200 and seconds < 40, (status, seconds)
        answer = stalled[0].recv(4096).decode()  # the stalled one is told why
        assert answer.startswith("HTTP/1.1 408") and "did not arrive" in answer, answer
    finally:
        for sock in stalled:
            sock.close()
        server.kill()
        server.communicate(timeout=30)


def test_the_http_api_example_in_the_docs_runs_as_written(unmasker, tmp_path, monkeypatch):
    import uvicorn

    from unmask.serve.app import listen

    doc = (REPO / "docs" / "unmask" / "serve.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", doc.split("## The HTTP API", 1)[1], re.S)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(unmasker), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        (tmp_path / "photo.jpg").write_bytes(need_photo().read_bytes())
        monkeypatch.chdir(tmp_path)
        code = example.replace('"http://127.0.0.1:7860"', f'"http://127.0.0.1:{sock.getsockname()[1]}"')
        assert code != example
        exec(compile(code, "serve.md", "exec"), {"__name__": "__main__"})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    photo = load_image(need_photo(), max_side=None)
    first, refilled = (np.asarray(Image.open(tmp_path / name).convert("RGB")) for name in ("result.png",
                                                                                           "refilled.png"))
    assert first.shape == refilled.shape == photo.shape
    np.testing.assert_array_equal(first, photo)  # the tiny model's empty map: nothing unmasked at first
    assert (refilled != photo).any()  # the lower half of the face, refilled

"""The HTTP side of ``unmask serve``: one static page and three JSON/PNG endpoints.

    GET  /                             the page (static/index.html, static/app.js)
    GET  /api/limits                   what the page checks before uploading
    POST /api/photos                   body: the photo's bytes -> JSON: id, sizes, faces, the map (PNG data URL)
    GET  /api/photos/{id}/result.png   the photo with every face unmasked, as first predicted
    POST /api/photos/{id}/refill       body: the edited map (PNG at the map's size) -> the new result (PNG)

Every refusal is an HTTP 4xx with ``{"error": "one line"}``, which the page shows; anything unexpected
is logged and answered with a one-line 500, never a traceback. Requests keep no state but the photo
cache (``editing.PhotoCache``); the model runs one request at a time, on one thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from maskgen.source import MAX_PIXELS

from ..predict import Unmasker
from .editing import EditError, EditedPhoto, PhotoCache, open_photo, png_bytes, read_map, refill, warm_up

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 64 << 20  # a photo file; a 100-Mpx camera JPEG is about 30-50 MB
MAX_MAP_BYTES = 32 << 20  # an edited map: PNG of at most EDIT_MAX_SIDE^2 RGBA pixels, about 16 MB raw
PNG = "image/png"


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, refused (413) as soon as it passes ``limit`` bytes."""
    too_large = EditError(413, f"{what} too large: over the limit of {_size(limit)}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _open_upload(unmasker: Unmasker, data: bytes) -> tuple[EditedPhoto, bytes]:
    """An uploaded photo unmasked, and its map as PNG."""
    with tempfile.NamedTemporaryFile(prefix="unmask-serve-") as file:  # load_image reads files
        file.write(data)
        file.flush()
        edited = open_photo(unmasker, Path(file.name))
    return edited, png_bytes(edited.map)


def _refilled_png(unmasker: Unmasker, edited: EditedPhoto, data: bytes) -> bytes:
    """The result of an edited map sent by the page, as PNG."""
    return png_bytes(refill(unmasker, edited, read_map(data, edited.edit_size)))


def _log_failure(done: Future) -> None:
    if done.exception() is not None:
        log.warning("warming the face detectors up failed: %s", done.exception())


Handler = Callable[[Request], Awaitable[Response]]


def _answers_errors(handler: Handler) -> Handler:
    """Refusals -> 4xx with the message as JSON; anything else -> logged, and a one-line 500."""
    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except EditError as err:
            return JSONResponse({"error": err.message}, err.status)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening any more
        except Exception as err:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": f"internal error ({type(err).__name__}); the server's log has "
                                          "the details"}, 500)
    return answered


def create_app(unmasker: Unmasker, cache: PhotoCache | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Starlette:
    """The page's application around a loaded model."""
    cache = cache if cache is not None else PhotoCache()
    # One thread does all the image work, one request at a time: memory stays that of one photo, and the
    # allocator keeps one arena rather than one per pool thread (which grew the server's RSS).
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-serve")
    warming: list[Future] = []  # the detectors' warm-up, once: it holds the interpreter for seconds, so it
    # starts when the page has loaded and asked for its limits, while the person picks a photo

    def warm_once() -> None:
        if not warming:
            warming.append(worker.submit(warm_up, unmasker))
            warming[0].add_done_callback(_log_failure)

    async def on_worker(function, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, function, *args)

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def limits(_request: Request) -> Response:
        return JSONResponse({"max_upload_bytes": max_upload_bytes, "max_pixels": MAX_PIXELS},
                            background=BackgroundTask(warm_once))

    async def upload(request: Request) -> Response:
        data = await _body(request, max_upload_bytes, "photo")
        if not data:
            raise EditError(400, "empty upload: the file has 0 bytes")
        edited, map_png = await on_worker(_open_upload, unmasker, data)
        cache.add(edited)
        width, height = edited.edit_size
        return JSONResponse({
            "id": edited.id,
            "width": int(edited.photo.shape[1]), "height": int(edited.photo.shape[0]),
            "map_width": width, "map_height": height,
            "faces": [{"box": [round(float(v), 1) for v in face.box], "coverage": round(float(face.coverage), 4),
                       "seconds": round(float(face.seconds), 3)} for face in edited.faces],
            "map": "data:image/png;base64," + base64.b64encode(map_png).decode("ascii"),
        })

    async def result(request: Request) -> Response:
        edited = cache.get(request.path_params["photo_id"])
        return Response(edited.result_png, media_type=PNG)

    async def refilled(request: Request) -> Response:
        edited = cache.get(request.path_params["photo_id"])
        data = await _body(request, MAX_MAP_BYTES, "map")
        return Response(await on_worker(_refilled_png, unmasker, edited, data), media_type=PNG)

    routes = [
        Route("/", _answers_errors(page)),
        Route("/api/limits", _answers_errors(limits)),
        Route("/api/photos", _answers_errors(upload), methods=["POST"]),
        Route("/api/photos/{photo_id}/result.png", _answers_errors(result)),
        Route("/api/photos/{photo_id}/refill", _answers_errors(refilled), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError when it cannot be had), bound before the model loads so
    that a port in use is said at once."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        sock.bind(address)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def serve(unmasker: Unmasker, sock: socket.socket) -> None:
    """Serve the page on ``sock`` until interrupted."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(unmasker), log_level="warning", access_log=False))
    server.run(sockets=[sock])

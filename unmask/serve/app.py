"""The HTTP side of ``unmask serve``: one static page and three JSON/PNG endpoints.

    GET  /                             the page (static/index.html, static/app.js)
    GET  /api/limits                   what the page checks before uploading
    POST /api/photos                   body: the photo's bytes -> JSON: id, sizes, faces, the map (soft, PNG data URL)
    GET  /api/photos/{id}/result.png   the photo with every face unmasked, as first predicted
    POST /api/photos/{id}/refill       body: the edited map (PNG at the map's size) -> the new result (PNG)

Every refusal is an HTTP 4xx (503 when busy) with ``{"error": "one line"}``, which the page shows;
anything unexpected is logged and answered with a one-line 500, never a traceback. Requests keep no
state but the photo cache (``editing.PhotoCache``); the model runs one request at a time, on one daemon
thread, and at most JOBS requests hold a body or wait for it (more: 503, before their body is read). A
body that stalls (BODY_IDLE_S without a byte) or drags (past BODY_TOTAL_S) is dropped with 408, so
stalled clients cannot keep the slots; a response is written after its slot is freed, so a client slow
to read it holds none.

A local server is still reachable from any page the browser opens: a request whose Host is not one of
the server's names (DNS rebinding) is refused by Starlette's TrustedHostMiddleware (400, plain text),
and a POST whose Origin is another site's (a cross-site form or fetch) with 403.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from maskgen.clitools import EXIT_INTERRUPTED, INTERRUPTED

from ..predict import Unmasker
from .editing import (
    MAX_PHOTO_PIXELS,
    EditedPhoto,
    EditError,
    PhotoCache,
    open_photo,
    png_bytes,
    read_map,
    refill,
    warm_up,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 64 << 20  # a photo file; a 100-Mpx camera JPEG is about 30-50 MB
MAX_MAP_BYTES = 32 << 20  # an edited map: PNG of at most EDIT_MAX_SIDE^2 RGBA pixels, about 16 MB raw
PNG = "image/png"
JOBS = 3  # requests for the model at once (one runs, the others wait), each holding its body: memory bounded
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # the names a page on this machine reaches the server by
ANY_ADDRESS = ("0.0.0.0", "::", "")  # a --host that listens on every interface: any Host then
SHUTDOWN_GRACE_S = 1  # on Ctrl-C, how long requests may still finish; a running job is not waited for
BODY_IDLE_S = 10  # an upload that sends nothing this long is dropped (408), freeing its job slot
BODY_TOTAL_S = 120  # and one not all sent by then: 64 MB at about 4 Mbit/s


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


async def _body(request: Request, limit: int, what: str, idle_s: float = BODY_IDLE_S,
                total_s: float = BODY_TOTAL_S) -> bytes:
    """The request's body, refused (413) as soon as it passes ``limit`` bytes, and (408) when the client
    sends nothing for ``idle_s`` or has not sent it all within ``total_s``: a stalled client must not
    hold one of the few job slots."""
    too_large = EditError(413, f"{what} too large: over the limit of {_size(limit)}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    deadline = asyncio.get_running_loop().time() + total_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), min(idle_s, max(left, 0)))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            stalled = f"sent nothing for {idle_s:g} s" if left > idle_s else f"took over {total_s:g} s"
            raise EditError(408, f"the {what} did not arrive: the upload {stalled}; try again") from None
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _open_upload(data: bytes, unmasker: Unmasker, max_pixels: int) -> tuple[EditedPhoto, bytes]:
    """An uploaded photo unmasked, and its soft map (smooth edges) as PNG."""
    with tempfile.NamedTemporaryFile(prefix="unmask-serve-") as file:  # load_image reads files
        file.write(data)
        file.flush()
        edited = open_photo(unmasker, Path(file.name), max_pixels)
    return edited, png_bytes(edited.soft_map)


def _refilled_png(data: bytes, unmasker: Unmasker, edited: EditedPhoto) -> bytes:
    """The result of an edited map sent by the page, as PNG."""
    return png_bytes(refill(unmasker, edited, read_map(data, edited.edit_size)))


def _log_failure(done: Future) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("warming the face detectors up failed: %s", done.exception())


class Worker:
    """One daemon thread that runs the image work, one job at a time, in order. Unlike a
    ThreadPoolExecutor's, its thread is not waited for when the process ends: Ctrl-C during a long job
    stops the server at once (``shutdown`` cancels the jobs still waiting)."""

    def __init__(self):
        self.running = False  # a job is running now
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="unmask-serve", daemon=True)
        self._thread.start()

    def submit(self, function: Callable, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, function, args))
        return future

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if not future.set_running_or_notify_cancel():
                continue
            self.running = True
            try:
                future.set_result(function(*args))
            except BaseException as err:  # the waiting request answers it
                future.set_exception(err)
            finally:
                self.running = False

    def shutdown(self) -> None:
        """Cancel the waiting jobs and end the thread after the running one (not waited for)."""
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if job is not None:
                    job[0].cancel()
        self._jobs.put(None)


def allowed_hosts(host: str) -> list[str]:
    """The Host names the server answers to when it listens on ``host``: this machine's names and the
    address itself; any name when it listens on every interface."""
    if host in ANY_ADDRESS:
        return ["*"]
    return [*LOCAL_HOSTS, f"[{host}]" if ":" in host else host]


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


Handler = Callable[[Request], Awaitable[Response]]


def _answers_errors(handler: Handler) -> Handler:
    """Refusals -> 4xx with the message as JSON; anything else -> logged, and a one-line 500."""
    async def answered(request: Request) -> Response:
        try:
            origin = request.headers.get("origin")
            if request.method not in ("GET", "HEAD") and origin is not None and origin != _own_origin(request):
                raise EditError(403, f"refused: a page from {origin[:100]} may not use this server (only its own page)")
            return await handler(request)
        except EditError as err:
            return JSONResponse({"error": err.message}, err.status)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening any more
        except asyncio.CancelledError:  # the server is stopping (Ctrl-C) and does not wait for this job
            return JSONResponse({"error": "the server is stopping: try again once it is started again"}, 503)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "internal error: the server could not do this; its log has the "
                                          "details"}, 500)
    return answered


def create_app(unmasker: Unmasker, cache: PhotoCache | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PHOTO_PIXELS, hosts: Sequence[str] = LOCAL_HOSTS, jobs: int = JOBS) -> Starlette:
    """The page's application around a loaded model; ``hosts``: the Host names it answers to
    (``allowed_hosts``)."""
    cache = cache if cache is not None else PhotoCache()
    # One thread does all the image work, one request at a time: memory stays that of one photo, and the
    # allocator keeps one arena rather than one per pool thread (which grew the server's RSS).
    worker = Worker()
    pending = [0]  # requests for the model now: reading their body, waiting or running (one event loop)
    warming: list[Future] = []  # the detectors' warm-up, once: it holds the interpreter for seconds, so it
    # starts when the page has loaded and asked for its limits, while the person picks a photo

    def warm_once() -> None:
        if not warming:
            warming.append(worker.submit(warm_up, unmasker))
            warming[0].add_done_callback(_log_failure)

    async def on_worker(request: Request, limit: int, what: str, function, *args):
        """``function(body, *args)`` on the worker, for one of at most ``jobs`` requests at once."""
        if pending[0] >= jobs:
            raise EditError(503, f"busy: {pending[0]} requests are being worked on; try again in a moment")
        pending[0] += 1
        try:
            data = await _body(request, limit, what)
            if not data:
                raise EditError(400, "empty upload: the file has 0 bytes" if what == "photo"
                                else "empty map: the request carried no image")
            return await asyncio.wrap_future(worker.submit(function, data, *args))
        finally:
            pending[0] -= 1

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        worker.shutdown()  # Ctrl-C: the jobs still waiting are dropped, the running one is not waited for

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def limits(_request: Request) -> Response:
        return JSONResponse({"max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels},
                            background=BackgroundTask(warm_once))

    async def upload(request: Request) -> Response:
        edited, soft_map_png = await on_worker(request, max_upload_bytes, "photo", _open_upload, unmasker, max_pixels)
        cache.add(edited)
        width, height = edited.edit_size
        return JSONResponse({
            "id": edited.id,
            "width": int(edited.photo.shape[1]), "height": int(edited.photo.shape[0]),
            "map_width": width, "map_height": height,
            "faces": [{"box": [round(float(v), 1) for v in face.box], "coverage": round(float(face.coverage), 4),
                       "seconds": round(float(face.seconds), 3)} for face in edited.faces],
            "map": "data:image/png;base64," + base64.b64encode(soft_map_png).decode("ascii"),
        })

    async def result(request: Request) -> Response:
        edited = cache.get(request.path_params["photo_id"])
        return Response(edited.result_png, media_type=PNG)

    async def refilled(request: Request) -> Response:
        edited = cache.get(request.path_params["photo_id"])
        return Response(await on_worker(request, MAX_MAP_BYTES, "map", _refilled_png, unmasker, edited), media_type=PNG)

    routes = [
        Route("/", _answers_errors(page)),
        Route("/api/limits", _answers_errors(limits)),
        Route("/api/photos", _answers_errors(upload), methods=["POST"]),
        Route("/api/photos/{photo_id}/result.png", _answers_errors(result)),
        Route("/api/photos/{photo_id}/refill", _answers_errors(refilled), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))])
    app.state.worker = worker
    return app


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


LARGE_BUFFER_BYTES = 256 * 1024  # served from mmap, so freeing a photo's buffers gives the memory back


def return_large_buffers() -> None:
    """Have glibc serve every allocation over ``LARGE_BUFFER_BYTES`` from mmap. Its adaptive threshold
    otherwise moves up to the largest buffer freed (a photo's float copies: tens of MB) and keeps such
    buffers in the heap, so the server's resident memory climbed by ~70 MB over its first requests and
    stayed there (benchmarks/bench_serve.py: +16 MB over 100 requests with this, +69 MB without). Other C
    libraries: nothing to do."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, LARGE_BUFFER_BYTES)  # M_MMAP_THRESHOLD (malloc.h)
    except OSError:
        pass


def serve(unmasker: Unmasker, sock: socket.socket, host: str) -> None:
    """Serve the page on ``sock`` (listening on ``host``) until interrupted: uvicorn then raises the
    interrupt again (KeyboardInterrupt) once it has stopped. A job still running then is not waited for:
    the process ends at once, as an interrupted command ends (``maskgen.clitools``), without the
    interpreter's shutdown, which a thread inside native code (dlib, torch) can abort ("terminate called")."""
    import uvicorn

    return_large_buffers()
    app = create_app(unmasker, hosts=allowed_hosts(host))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        if app.state.worker.running:
            print(INTERRUPTED, file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)
        raise

"""What the page edits: an uploaded photo, its faces and their maps, kept in a small LRU cache.

The page paints on one map of the whole photo, at most EDIT_MAX_SIDE px on its longer side (stage 2
sees crops of 128-1024 px, so a finer map changes nothing), and sends all of it back. Each pixel of
that map belongs to the face whose box centre is nearest (in box sizes), so a stroke between two
faces goes to one of them only, and only the faces whose part changed run stage 2 again.
"""

from __future__ import annotations

import io
import threading
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskgen.landmarks import NoFace
from maskgen.source import BadImage, load_image

from ..predict import FaceResult, Unmasker

EDIT_MAX_SIDE = 2048  # px: the longer side of the map the page paints on
CACHE_PHOTOS = 4  # photos kept for re-runs; an older one is uploaded again
CACHE_BYTES = 1 << 30  # and at most this much of them (the newest is kept whatever its size)


class EditError(Exception):
    """A request the page cannot do: an HTTP status and a one-line message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class EditedPhoto:
    """One uploaded photo, its faces as stage 1 and 2 left them, and the map the page starts from."""

    photo: np.ndarray  # RGB uint8, full size
    faces: list[FaceResult]  # one per face, as first predicted
    result_png: bytes  # the photo with every face unmasked (the first result), as PNG
    map: np.ndarray  # uint8 0/255 at the edit size: every face's predicted map
    owner: np.ndarray  # at the edit size: the index of the face each map pixel belongs to
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def edit_size(self) -> tuple[int, int]:
        """(width, height) of the map the page paints on."""
        return self.map.shape[1], self.map.shape[0]

    @property
    def nbytes(self) -> int:
        return self.photo.nbytes + len(self.result_png) + self.map.nbytes + self.owner.nbytes + sum(
            sum(getattr(face, name).nbytes for name in ("crop_input", "valid", "crop_map", "crop_output"))
            for face in self.faces)


class PhotoCache:
    """The last few photos by id (least recently used first out), bounded in count and bytes, so a
    long session does not grow the server's memory."""

    def __init__(self, max_photos: int = CACHE_PHOTOS, max_bytes: int = CACHE_BYTES):
        self.max_photos, self.max_bytes = max_photos, max_bytes
        self._photos: OrderedDict[str, EditedPhoto] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, photo: EditedPhoto) -> None:
        with self._lock:
            self._photos[photo.id] = photo
            while len(self._photos) > 1 and (len(self._photos) > self.max_photos or
                                             sum(p.nbytes for p in self._photos.values()) > self.max_bytes):
                self._photos.popitem(last=False)

    def get(self, photo_id: str) -> EditedPhoto:
        with self._lock:
            if photo_id not in self._photos:
                raise EditError(404, f"unknown photo id {photo_id[:40]!r}: the server keeps the last "
                                     f"{self.max_photos} photos (and forgets them when restarted); upload it again")
            self._photos.move_to_end(photo_id)
            return self._photos[photo_id]

    def __len__(self) -> int:
        return len(self._photos)


def edit_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the map the page paints on for a photo of this size."""
    scale = min(1.0, EDIT_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resized_map(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0/255 map at ``size`` (width, height): shrunk by area then thresholded, so thin parts survive at
    half coverage; enlarged by nearest neighbour."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    shrink = size[0] < mask.shape[1]
    resized = cv2.resize(mask, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    return np.where(resized >= 128, 255, 0).astype(np.uint8)


def face_owners(boxes: list, photo_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """For each pixel of a map of ``size`` (width, height) over a photo of ``photo_size``, the index of
    the face it belongs to: the nearest box centre, distances measured in each box's size."""
    sx, sy = size[0] / photo_size[0], size[1] / photo_size[1]
    ys, xs = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    owner = np.zeros((size[1], size[0]), np.min_scalar_type(max(len(boxes) - 1, 0)))
    best = np.full(owner.shape, np.inf, np.float32)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        scale = max(float(np.hypot((x1 - x0) * sx, (y1 - y0) * sy)), 1.0)
        distance = np.hypot(xs - (x0 + x1) / 2 * sx, ys - (y0 + y1) / 2 * sy) / scale
        nearer = distance < best
        owner[nearer], best[nearer] = index, distance[nearer]
    return owner


def warm_up(unmasker: Unmasker) -> None:
    """Load the face detectors (seconds, once per process) before the first photo comes: a search for
    faces in a blank image, which finds none."""
    try:
        unmasker(np.full((256, 256, 3), 128, np.uint8), aligned=False)
    except NoFace:
        pass


def open_photo(unmasker: Unmasker, path: Path) -> EditedPhoto:
    """Read an uploaded photo (refused with the reason: not an image, past the pixel limit, ...) and
    unmask every face in it."""
    try:
        photo = load_image(path, max_side=None)  # full size: the result replaces the photo
    except BadImage as err:
        raise EditError(422, f"not a usable image: {err}") from None
    try:
        result = unmasker(photo, aligned=False)
    except NoFace as err:
        raise EditError(422, f"no face to unmask in this photo ({err})") from None
    photo_size = (photo.shape[1], photo.shape[0])
    size = edit_size(*photo_size)
    return EditedPhoto(photo, list(result.faces), png_bytes(result.image), _resized_map(result.map, size),
                       face_owners([face.box for face in result.faces], photo_size, size))


def read_map(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """An edited map sent by the page (a PNG of ``size``: width, height) -> uint8 0/255. A pixel is in the
    map where its alpha is at least 128 (a canvas with painted strokes) or, without alpha, its grey level."""
    if not data:
        raise EditError(400, "empty map: the request carried no image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by its size
            opened = Image.open(io.BytesIO(data))
        with opened as img:
            if img.format != "PNG":
                raise EditError(422, f"the map must be a PNG image, not {img.format or 'this format'}")
            if img.size != size:  # before decoding: a map is never larger than the edit size
                raise EditError(422, f"the map is {img.width}x{img.height} px; this photo's map is "
                                     f"{size[0]}x{size[1]} px")
            channel = img.getchannel("A") if "A" in img.getbands() else img.convert("L")
            values = np.asarray(channel)
    except EditError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise EditError(422, f"the map is not a readable PNG image ({type(err).__name__})") from None
    return np.where(values >= 128, 255, 0).astype(np.uint8)


def refill(unmasker: Unmasker, edited: EditedPhoto, new_map: np.ndarray) -> np.ndarray:
    """The photo with stage 2 run again on the faces whose part of the map the page changed
    (the others keep their first output)."""
    photo_size = (edited.photo.shape[1], edited.photo.shape[0])
    faces = list(edited.faces)
    for index, face in enumerate(faces):
        mine = edited.owner == index
        if np.array_equal(new_map[mine], edited.map[mine]):
            continue
        face_map = _resized_map(np.where(mine, new_map, 0).astype(np.uint8), photo_size)
        faces[index] = unmasker.refill(edited.photo, face, face_map)
    return unmasker.paste(edited.photo, faces)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an RGB or grey uint8 image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as PNG")
    return data.tobytes()

"""What the page edits: an uploaded photo, its faces and their maps, kept in a small LRU cache.

The page paints on one map of the whole photo, at most EDIT_MAX_SIDE px on its longer side (stage 2
sees crops of 128-1024 px, so a finer map changes nothing), and sends all of it back. The edit is taken
as a change: the map pixels that differ from the first map are carried onto the crop of every face
they fall on (with their new values); every other crop pixel keeps its first value exactly, so a map
is never rebuilt by a round trip through the photo. Only the faces whose crop map changed since the
last run run stage 2 again, and an edit that changes no face is refused with that reason.

The page is sent the map soft (``soft_page_map``: each face's crop map resampled bilinearly, so its
edges are smooth rather than the crop's pixels enlarged into stair steps); a pixel is in the map where
that soft level is at least MAP_ON, the rule the page's own edits are read by too (``read_map``).
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

from maskgen.align import map_to_crop, soft_map_to_photo
from maskgen.landmarks import NoFace
from maskgen.source import MAX_PIXELS, BadImage, load_image

from ..predict import FaceResult, FacesTooSmall, Unmasker

EDIT_MAX_SIDE = 2048  # px: the longer side of the map the page paints on
CACHE_PHOTOS = 4  # photos kept for re-runs; an older one is uploaded again
CACHE_BYTES = 1 << 30  # and at most this much of them (the newest is kept whatever its size)
MAX_PHOTO_PIXELS = 50_000_000  # a photo's pixels, from its header: decoding one costs ~12 bytes a pixel, and
# without a face a 50-Mpx photo takes 15-25 s to say so (maskgen's own limit, MAX_PIXELS, is 200 Mpx)
KEPT, ERASED, PAINTED = 0, 1, 2  # a map pixel the page left as it was, or changed to 0 or to 255
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAP_ON = 128  # a soft map level (or a painted alpha) at least this is in the map
NOT_AN_IMAGE = "this file is not an image we can read (JPEG, PNG, WebP, BMP)"


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
    first: list[FaceResult]  # one per face, as first predicted
    result_png: bytes  # the photo with every face unmasked (the first result), as PNG
    map: np.ndarray  # uint8 0/255 at the edit size: every face's predicted map (what the page starts from)
    soft_map: np.ndarray | None = None  # uint8 0-255, the same map with smooth edges: what the page is sent
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    faces: list[FaceResult] = field(default_factory=list)  # as the last re-run left them (first: ``first``)

    def __post_init__(self):
        self.faces = self.faces or list(self.first)

    @property
    def edit_size(self) -> tuple[int, int]:
        """(width, height) of the map the page paints on."""
        return self.map.shape[1], self.map.shape[0]

    @property
    def nbytes(self) -> int:
        soft = 0 if self.soft_map is None else self.soft_map.nbytes
        return self.photo.nbytes + len(self.result_png) + self.map.nbytes + soft + 2 * sum(
            sum(getattr(face, name).nbytes for name in ("crop_input", "valid", "crop_map", "crop_output"))
            for face in self.first)  # the first faces and the last re-run's


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


def soft_page_map(faces: list[FaceResult], photo_shape: tuple[int, ...], size: tuple[int, int]) -> np.ndarray:
    """The union of the faces' crop maps on a map of ``size`` (width, height) for a photo of ``photo_shape``,
    each resampled bilinearly from its crop (0-255, soft at the edges; MAP_ON and above is in the map), and
    nothing where a crop lies off the photo."""
    soft = np.zeros((size[1], size[0]), np.uint8)
    scale = size[0] / photo_shape[1]
    for face in faces:
        np.maximum(soft, soft_map_to_photo(np.minimum(face.crop_map, face.valid), face.matrix, size, scale), out=soft)
    return soft


def warm_up(unmasker: Unmasker) -> None:
    """Load the face detectors (seconds, once per process) before the first photo comes: a search for
    faces in a blank image, which finds none."""
    try:
        unmasker(np.full((256, 256, 3), 128, np.uint8), aligned=False)
    except NoFace:
        pass


def _refuse_large(path: Path, max_pixels: int) -> None:
    """Refuse a photo of more than ``max_pixels`` from its header, before it is decoded (a file that is no
    image is left to load_image, which says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:  # PIL's own refusal, past twice maskgen's limit
        width = height = None
    except (OSError, SyntaxError, ValueError):
        return
    if width is None or width * height > max_pixels:
        size = f"over {2 * MAX_PIXELS:,} pixels" if width is None else f"{width}x{height} px, {width * height:,} pixels"
        raise EditError(422, f"image too large ({size}): this page takes photos of at most {max_pixels:,} pixels "
                             f"({max_pixels / 1e6:g} Mpx); make it smaller first")


def open_photo(unmasker: Unmasker, path: Path, max_pixels: int = MAX_PHOTO_PIXELS, min_face: int | None = None
               ) -> EditedPhoto:
    """Read an uploaded photo (refused with the reason: not an image, past ``max_pixels``, ...) and
    unmask every face in it (of at least ``min_face`` px: the Unmasker's default unless given)."""
    _refuse_large(path, max_pixels)
    try:
        photo = load_image(path, max_side=None)  # full size: the result replaces the photo
    except BadImage as err:
        reason = NOT_AN_IMAGE if str(err).startswith("unreadable image") else f"not a usable image: {err}"
        raise EditError(422, reason) from None
    try:
        result = unmasker(photo, aligned=False, **({} if min_face is None else {"min_face": min_face}))
    except FacesTooSmall as err:  # the page has no --min-face to offer
        raise EditError(422, f"no face to unmask in this photo: faces smaller than {err.min_face} px are not "
                             f"unmasked ({err.found} found)") from None
    except NoFace as err:
        raise EditError(422, f"no face to unmask in this photo ({err})") from None
    size = edit_size(photo.shape[1], photo.shape[0])
    soft = soft_page_map(result.faces, photo.shape, size)
    page_map = np.where(soft >= MAP_ON, 255, 0).astype(np.uint8)
    return EditedPhoto(photo, list(result.faces), png_bytes(result.image), page_map, soft_map=soft)


def _png_size(data: bytes) -> str:
    """``WxH px`` from a PNG's header, without decoding it."""
    if data[:8] == PNG_SIGNATURE and len(data) >= 24:
        return "x".join(str(int.from_bytes(data[at:at + 4], "big")) for at in (16, 20)) + " px"
    return "larger than any photo's map"


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
    except Image.DecompressionBombError:  # PIL refuses it when opened, past twice maskgen's MAX_PIXELS
        raise EditError(422, f"the map is {_png_size(data)}; this photo's map is {size[0]}x{size[1]} px") from None
    except (OSError, SyntaxError, ValueError):
        raise EditError(422, "the map is not a readable PNG image") from None
    return np.where(values >= MAP_ON, 255, 0).astype(np.uint8)


def crop_maps(edited: EditedPhoto, new_map: np.ndarray) -> list[np.ndarray]:
    """Each face's crop map for the page's map ``new_map`` (at the edit size): its first crop map with the
    map pixels the page changed carried onto the crop (nearest neighbour, as maskgen.align.map_to_crop),
    with their new values, on the crop's pixels that lie on the photo; every other pixel exactly kept."""
    changed = new_map != edited.map
    if not changed.any():
        return [face.crop_map for face in edited.first]
    change = np.where(changed, np.where(new_map > 0, PAINTED, ERASED), KEPT).astype(np.uint8)
    if change.shape != edited.photo.shape[:2]:  # the page's map is smaller than the photo: each of its pixels
        change = cv2.resize(change, (edited.photo.shape[1], edited.photo.shape[0]), interpolation=cv2.INTER_NEAREST)
    maps = []
    for face in edited.first:
        carried = np.where(face.valid > 0, map_to_crop(change, face.matrix, face.crop_map.shape[0]), KEPT)
        maps.append(np.where(carried == KEPT, face.crop_map, np.where(carried == PAINTED, 255, 0)).astype(np.uint8))
    return maps


def refill(unmasker: Unmasker, edited: EditedPhoto, new_map: np.ndarray) -> np.ndarray:
    """The photo with stage 2 run again on the faces whose crop map the page's map ``new_map`` changes since
    the last run (a face whose map is back to the first prediction takes its first output again); the
    others keep theirs. EditError (422) when the edit changes no face."""
    faces = []
    new_crop_maps = crop_maps(edited, new_map)
    for first, last, crop_map in zip(edited.first, edited.faces, new_crop_maps, strict=True):
        if np.array_equal(crop_map, last.crop_map):
            faces.append(last)
        elif np.array_equal(crop_map, first.crop_map):
            faces.append(first)
        else:
            faces.append(unmasker.refill_crop(first, crop_map))
    if all(now is last for now, last in zip(faces, edited.faces, strict=True)):
        raise EditError(422, "the edit changes no face's map since the last run: paint or erase over a face "
                             "(the map counts only on each face's crop, around its box)")
    edited.faces = faces  # one worker thread runs every refill, one at a time
    return unmasker.paste(edited.photo, faces)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an RGB or grey uint8 image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as PNG")
    return data.tobytes()

"""Sources: find face images (CelebA layouts or any folder) and read them robustly.

CelebA is recognised in its official layouts:

* ``img_align_celeba/`` (178x218 aligned crops) with ``list_landmarks_align_celeba.txt``
* ``img_celeba/`` (in-the-wild photos) with ``list_landmarks_celeba.txt``

The annotation files may sit next to the image folder, in the dataset root, or in the official
``Anno/`` and ``Eval/`` sub-folders; ``list_eval_partition.txt`` and ``identity_CelebA.txt`` are
optional. Any other folder is scanned recursively for jpg/png/webp/bmp images. A bad annotation row
skips its image; a partition or identity file with no valid row, or with two partitions (identities) for
one image, stops the build (``AnnotationError``).

Every entry that looks like an image but is not read (a dangling or looping link, a folder named
``*.jpg``, another image format, a folder that cannot be listed) is a problem with a reason, so it
reaches failures.csv. A source's ``rel`` is its path below the root as text: file names that are not
valid UTF-8 are written with ``encode_name`` (the manifest's ``source``, see ``maskgen.format``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .landmarks import CELEBA_ALIGNED_PRIOR

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Image formats met in photo folders that are not read: listed as failures rather than ignored like other files.
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ppm", ".pgm",
                          ".pnm", ".ico", ".psd", ".svg", ".dng", ".cr2", ".nef", ".arw")
MIN_SIDE = 40  # smaller images cannot hold a face the 68-point predictor can place
MAX_SIDE = 4096  # larger images are downscaled on load; landmarks and crops need no more
# Larger images are refused before decoding: a PNG of a few hundred KB can claim gigapixels, and
# decoding one costs ~12 bytes a pixel. 200 Mpx takes the largest phone sensors (16320 x 12240).
MAX_PIXELS = 200_000_000

CELEBA_LAYOUTS = {
    "img_align_celeba": "list_landmarks_align_celeba.txt",
    "img_celeba": "list_landmarks_celeba.txt",
}
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_NAMES = {"0": "train", "1": "val", "2": "test"}
EXIF_ORIENTATION = 0x0112

# PIL's own check (for any reader in the process) at the same limit; it warns above it and refuses only
# above twice it, so load_image checks the size itself.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class BadImage(Exception):
    """An image that cannot be used; the message is the reason written to failures.csv."""


@dataclass
class SourceImage:
    path: Path
    rel: str  # path below the source root, forward slashes, ``encode_name``d: the stable identity of a source
    identity: str | None = None
    partition: str | None = None  # train/val/test from CelebA's partition file
    landmarks5: np.ndarray | None = None  # (5, 2) CelebA order: left eye, right eye, nose, mouth left, mouth right
    prior5: np.ndarray | None = None  # where the layout puts the 5 points when no row gives them


@dataclass
class SourceListing:
    root: Path
    layout: str  # "img_align_celeba", "img_celeba" or "folder"
    images: list[SourceImage]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (source or file:line, reason)


def _find_annotation(root: Path, image_dir: Path, name: str) -> Path | None:
    """The annotation file ``name`` in the first of its usual folders that has one, or None. Something there
    under that name that is not a file (a folder, a dangling link) is an AnnotationError, not a file absent:
    a partition or identity file silently left out would give another dataset."""
    for folder in (image_dir.parent, root, root / "Anno", root / "Eval", image_dir.parent / "Anno",
                   image_dir.parent / "Eval", image_dir):
        candidate = folder / name
        if candidate.is_file():
            return candidate
        if os.path.lexists(candidate):
            what = "a folder" if candidate.is_dir() else "a link to nothing" if candidate.is_symlink() else "not a file"
            raise AnnotationError(f"{candidate} is not a readable file ({what}): "
                                  "make it the annotation file or remove it")
    return None


class AnnotationError(ValueError):
    """An annotation file that cannot be used at all (the message names the file): the build stops,
    where a bad row only skips its image."""


def _annotation_lines(path: Path) -> list[str]:
    """The lines of an annotation file. A UTF-8 byte order mark (some Windows editors write one) is not
    part of the first image's name."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.read().splitlines()


def _read_rows(path: Path, n_fields: int, skip_header: int, problems: list,
               unique: bool = False) -> dict[str, list[str]]:
    """Rows of a CelebA annotation file, keyed by file name; malformed rows go to ``problems``.
    ``unique``: two well-formed rows that disagree about one image are an ``AnnotationError`` (the last
    one would silently win); repeating a row is fine."""
    rows: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}  # of each name's well-formed row
    for lineno, line in enumerate(_annotation_lines(path)[skip_header:], start=skip_header + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_fields:
            problems.append((f"{path.name}:{lineno}", f"malformed row in {path.name} (expected {n_fields} fields)"))
            if parts and parts[0].lower().endswith(IMAGE_EXTENSIONS):
                rows[parts[0]] = []  # known file, unusable row: the image is skipped, not guessed
            continue
        name, values = parts[0], parts[1:]
        if unique and name in first_line and rows[name] != values:
            raise AnnotationError(f"{path}: {name} has two different rows (line {first_line[name]}: "
                                  f"{' '.join(rows[name])}; line {lineno}: {' '.join(values)}); keep one")
        first_line.setdefault(name, lineno)
        rows[name] = values
    return rows


def _read_partition(path: Path, problems: list) -> dict[str, list[str]]:
    """CelebA's train/val/test rows (``NAME 0|1|2``). A file without one such row is refused: an empty
    or garbled file would otherwise quietly turn into a split by fractions."""
    rows = _read_rows(path, 2, 0, problems, unique=True)
    if not any(values and values[0] in PARTITION_NAMES for values in rows.values()):
        raise AnnotationError(f"{path}: no valid row (expected lines 'IMAGE PARTITION', partition 0, 1 or 2 "
                              f"for train, val, test)")
    return rows


def _read_identities(path: Path, problems: list) -> dict[str, list[str]]:
    """CelebA's identity rows (``NAME ID``, the ID a whole number), checked as the partition file is: a file
    without one such row, or two identities for one image, is refused (a garbled file would otherwise put the
    images under identities it does not give, and the split by identity with them)."""
    rows = _read_rows(path, 2, 0, problems, unique=True)
    if not any(values and values[0].isdigit() for values in rows.values()):
        raise AnnotationError(f"{path}: no valid row (expected lines 'IMAGE IDENTITY', the identity a whole "
                              "number)")
    return rows


def _landmark_header_lines(path: Path) -> int:
    """CelebA landmark files start with a count line and a column header line."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # as _annotation_lines
        head = [f.readline() for _ in range(2)]
    skip = 0
    if head[0].strip().isdigit():
        skip = 1
        if "lefteye" in head[1] or "x" in head[1].split()[:1]:
            skip = 2
    elif "lefteye" in head[0]:
        skip = 1
    return skip


def relative_name(path: Path, root: Path) -> str:
    """How a file below ``root`` is named in the dataset: its relative path, ``encode_name``d."""
    return encode_name(path.relative_to(root).as_posix())


def _not_read(path: Path) -> str | None:
    """None for a regular file (or a link to one), else why it cannot be read as an image."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno in (errno.ENOENT, errno.ENOTDIR) and path.is_symlink():
            return "dangling symbolic link (its target does not exist)"
        return f"cannot read: {err.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    return "not a regular file"


def find_images(image_dir: Path, recursive: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files in ``image_dir`` (sorted), and (path, reason) for everything image-like that is
    not read: links that lead nowhere, folders named like images, other image formats, folders that
    cannot be listed."""
    files, skipped = [], []
    for path in image_dir.rglob("*") if recursive else image_dir.iterdir():
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            reason = _not_read(path)
            if reason is None:
                files.append(path)
                continue
        elif suffix in OTHER_IMAGE_EXTENSIONS:
            reason = f"{suffix[1:]} images are not read (read: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
        elif not recursive or not path.is_dir():
            continue  # other files (annotations, notes) are not sources
        elif path.is_symlink():
            reason = "symbolic link to a folder, not followed: its images are not used"
        elif not os.access(path, os.R_OK | os.X_OK):
            reason = "folder cannot be listed (permission denied): its images are not used"
        else:
            continue
        skipped.append((path, reason))
    return sorted(files), sorted(skipped)


def discover(source: str | Path) -> SourceListing:
    """List the images of a source directory with whatever CelebA annotations it carries."""
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"source not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"source is not a directory: {root}")

    layout, image_dir = "folder", root
    for name in CELEBA_LAYOUTS:
        if root.name == name:
            layout, image_dir = name, root
            break
        if (root / name).is_dir():
            layout, image_dir = name, root / name
            break

    files, unread = find_images(image_dir, recursive=layout == "folder")
    problems = [(relative_name(path, image_dir), reason) for path, reason in unread]

    landmarks = partition = identity = {}
    if layout != "folder":
        lm_path = _find_annotation(root, image_dir, CELEBA_LAYOUTS[layout])
        if lm_path:
            landmarks = _read_rows(lm_path, 11, _landmark_header_lines(lm_path), problems)
        part_path = _find_annotation(root, image_dir, PARTITION_FILE)
        if part_path:
            partition = _read_partition(part_path, problems)
    id_path = _find_annotation(root, image_dir, IDENTITY_FILE)
    if id_path:
        identity = _read_identities(id_path, problems)

    images = []
    for path in files:
        name = path.name
        item = SourceImage(path=path, rel=relative_name(path, image_dir))
        if name in identity:
            row = identity[name]
            if not row or not row[0].isdigit():
                problems.append((item.rel, f"malformed identity row for {name}"))
                continue
            item.identity = row[0]
        if name in partition:
            row = partition[name]
            if not row or row[0] not in PARTITION_NAMES:
                problems.append((item.rel, f"malformed partition row for {name}"))
                continue
            item.partition = PARTITION_NAMES[row[0]]
        if name in landmarks:
            row = landmarks[name]
            try:
                item.landmarks5 = np.array([float(v) for v in row], dtype=np.float64).reshape(5, 2)
            except ValueError:
                row = []
            if not row:
                problems.append((item.rel, f"malformed landmark row for {name}"))
                continue
        elif layout == "img_align_celeba":
            item.prior5 = CELEBA_ALIGNED_PRIOR
        images.append(item)
    log.info("source %s: layout %s, %d images, %d annotation problems", root, layout, len(images), len(problems))
    return SourceListing(root=root, layout=layout, images=images, problems=problems)


# An RGB image is copied into its array this many bytes at a time: ``np.asarray(img.convert("RGB"))`` holds
# the decoded image three or four times over at once (the copy, and tobytes' chunks and their join), 1.2 GB
# more at 100 Mpx; by strips the array is the only full-size copy beside the decoded image. Same bytes.
STRIP_BYTES = 16 << 20


def _to_uint8_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return _rgb_by_strips(img)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent areas become mid-grey rather than whatever colour hides under alpha 0.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _rgb_by_strips(img: Image.Image) -> np.ndarray:
    """An RGB image's pixels (H, W, 3) uint8, copied ``STRIP_BYTES`` at a time."""
    w, h = img.size
    arr = np.empty((h, w, 3), np.uint8)
    rows = max(1, STRIP_BYTES // (3 * w))
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        arr[top:bottom] = np.frombuffer(img.crop((0, top, w, bottom)).tobytes(), np.uint8).reshape(bottom - top, w, 3)
    return arr


_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9A-Fa-f]+>")


def error_text(err: BaseException, path: str | Path) -> str:
    """``Type: message`` of an error met reading ``path``, without the path: failures.csv names the
    source by its relative path, and an absolute one would tie the dataset to the machine it was built on.
    Nor with an object's repr (a memory address): the same failure gives the same bytes in every build."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    text = str(err)
    path = Path(path)
    for form in sorted({os.fspath(p) for p in (path, path.absolute(), path.parent.absolute())}, key=len, reverse=True):
        text = text.replace(repr(form), "").replace(form, "")
    # An object's default repr (PIL's "cannot identify image file <_io.BytesIO object at 0x7f...>") holds a memory
    # address, which differs between runs: failures.csv and landmarks.parquet would not be byte-reproducible.
    text = _OBJECT_REPR.sub("", text)
    return f"{type(err).__name__}: {' '.join(text.split())}".rstrip(": ")


def load_image(path: str | Path, max_side: int | None = MAX_SIDE, data: bytes | None = None) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), upright per EXIF; raise BadImage with a reason.

    Images larger than ``max_side`` are downscaled to it (None: kept at full size); images of more than
    MAX_PIXELS are refused from their header, without decoding. ``data``: the file's bytes, already read
    (``read_source``); then ``path`` only names it."""
    path = Path(path)
    try:
        status = path.stat() if data is None else None
        if status is not None and not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
            raise BadImage("not a regular file")  # a FIFO or a device: never read (it may block or not end)
        if (status.st_size if status is not None else len(data)) == 0:
            raise BadImage("empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the size
            opened = Image.open(path if data is None else io.BytesIO(data))
        with opened as img:
            if img.width * img.height > MAX_PIXELS:
                raise BadImage(f"image too large ({img.width}x{img.height} px, limit {MAX_PIXELS} px): not decoded")
            img.load()  # decodes now, so truncation shows here
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)  # (a copy: only when there is something to undo)
            arr = _to_uint8_rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError:  # PIL's refusal past twice the limit, from the header too
        raise BadImage(f"image too large (over {2 * MAX_PIXELS} px, limit {MAX_PIXELS} px): not decoded") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"unreadable image: {error_text(e, path)}") from None
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise BadImage(f"image too small ({w}x{h} < {MIN_SIDE} px)")
    if max_side is not None and max(h, w) > max_side:
        import cv2

        scale = max_side / max(h, w)
        arr = cv2.resize(arr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def source_key(rel: str) -> str:
    """A WebDataset-safe key stem for a source (no dots, no slashes)."""
    stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    return _KEY_UNSAFE.sub("_", stem).strip("_") or "img"


# --- names that are not valid UTF-8 ----------------------------------------------------------------------
# The encoding is described in maskgen.format (next to MANIFEST_COLUMNS); these are its two directions.

_BYTE_ESCAPE = re.compile(r"\\x[0-9a-f]{2}")


def _escaped_form(text: str) -> bool:
    """True when every backslash of ``text`` starts a ``\\xNN`` escape (and there is one)."""
    return "\\" in text and "\\" not in _BYTE_ESCAPE.sub("", text)


def encode_name(name: str) -> str:
    """A file name (as the OS gives it: ``str`` with surrogate escapes for bytes that are not UTF-8) as
    valid Unicode text, reversibly: unchanged unless it is not valid UTF-8 or could be read as escaped."""
    if not any("\udc80" <= ch <= "\udcff" for ch in name) and not _escaped_form(name):
        return name
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff"
                   else "\\x5c" if ch == "\\" else ch for ch in name)


def decode_name(text: str) -> str:
    """The file name that ``encode_name`` turned into ``text`` (as the OS gives it: usable as a path)."""
    if not _escaped_form(text):
        return text
    raw, end = bytearray(), 0
    for m in _BYTE_ESCAPE.finditer(text):
        raw += text[end:m.start()].encode() + bytes([int(m.group()[2:], 16)])
        end = m.end()
    return os.fsdecode(bytes(raw + text[end:].encode()))


# --- a source's identity -------------------------------------------------------------------------------------

def content_digest(path: str | Path) -> str | None:
    """What a source is, whatever its name: the SHA-256 (hex) of the file's bytes; None when it cannot be
    read (the build then lists it as a failure when it reads it for landmarks). A copy keeps it (mtime
    does not), and an edit that keeps the size and the dimensions changes it. Reads the bytes, no decode."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


CHANGED = "changed during the build (its bytes differ from those hashed when the build started)"


def read_source(path: str | Path, digest: str | None) -> bytes:
    """A source's bytes, read once, when their SHA-256 is ``digest`` (its ``content_digest`` when the build
    started, which build.json and landmarks.parquet record): a file replaced since is a BadImage (``CHANGED``),
    so that nothing is recorded under content it was not made from. Decode the bytes returned
    (``load_image(path, data=...)``), not the file again."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BadImage(f"unreadable image: {error_text(err, path)}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BadImage(CHANGED)
    return data

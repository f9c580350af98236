"""Hand-drawn mask labels of real masked photos (``--photo-labels``): the contract, the loader and
its checks, run in full before an evaluation writes anything.

A labels folder holds ``labels.csv`` (``LABELS_FILE``) whose header starts ``photo,label,mask_type,wear``
(``LABEL_COLUMNS``), optionally followed by more columns:

* ``photo``: a file name inside the ``--photos`` folder (``0007.jpg``);
* ``label``: the label PNG, relative to the CSV's folder (``masks/0007.png``): single-channel,
  exactly the photo's height x width (the photo as ``maskgen.source.load_image`` reads it: upright
  per EXIF), values 0 and 255 only (255: mask pixels); one masked person per photo;
* ``mask_type``: one of ``MASK_TYPES``; ``wear``: one of ``WEARS`` (how the mask is worn);
* ``category`` (optional, ``CATEGORY``): the kind of hard case a photo is (``gaiter``, ``printed``,
  ``closeup``, ...): lowercase letters, digits, ``_`` or ``-``; the scores are broken down by it;
* any other extra column: read and ignored (notes of the people labelling).

An evaluation may take several labels folders of the same photo folder (``--photo-labels`` given
again); each is scored and reported apart, under a name from its folder name (``label_set_names``).

Every problem is a ``PhotoLabelError`` (a ``ValueError``) of one line that starts with the file
it is about.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskgen.format import WEARS  # how a mask is worn: the same names as maskgen's --wear
from maskgen.source import BadImage, load_image

LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("photo", "label", "mask_type", "wear")  # required, first and in this order
CATEGORY = "category"  # the optional column the scores are broken down by
# gaiter: a neck gaiter or snood pulled up; bandana: a scarf tied behind the head, often past the jaw;
# sports: a sports or respirator-style mask with valves or panels
MASK_TYPES = ("surgical", "n95", "kn95", "cloth", "cloth_printed", "gaiter", "bandana", "sports", "other")
CATEGORY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class PhotoLabelError(ValueError):
    """A labels file, a label or a photo that breaks the contract; the message names the file."""


@dataclass(frozen=True)
class PhotoLabel:
    photo: Path  # the photo file
    label: Path  # its label PNG
    mask_type: str
    wear: str
    size: tuple[int, int]  # (height, width) of the photo and of its label
    category: str | None = None  # the ``category`` column; None where the labels have none


def labels_csv(labels: str | Path) -> Path:
    """The CSV of ``labels``: the file itself, or ``labels.csv`` in the folder."""
    labels = Path(labels)
    if labels.is_dir():
        path = labels / LABELS_FILE
        if not path.is_file():
            raise PhotoLabelError(f"{path}: missing (the labels folder has no {LABELS_FILE})")
        return path
    if not labels.is_file():
        raise PhotoLabelError(f"{labels}: no such labels folder or CSV file")
    return labels


def _set_folder_name(labels: Path) -> str:
    """The name a labels set goes by: its folder's (a CSV other than ``labels.csv``: the file's stem)."""
    labels = labels.resolve()
    if labels.suffix.lower() == ".csv":
        return labels.parent.name if labels.name == LABELS_FILE else labels.stem
    return labels.name


def _words(name: str) -> list[str]:
    return [word for word in re.split(r"[^a-z0-9]+", name.lower()) if word]


def label_set_names(sets: Sequence[str | Path]) -> list[str | None]:
    """The name of each labels set, for its keys and files (``photos_group``, ``photos_file``): None for
    the first (it keeps the group ``photos``); for each further one its folder name less the leading
    words it shares with the first's (``real-masked-photos-hard`` after ``real-masked-photos``: ``hard``),
    or, where nothing is left, its whole folder name, slugged (``_`` between words). Raises ``ValueError``
    (one line) for a set given twice, a name with no letter or digit, or two sets of one name."""
    names: list[str | None] = []
    seen: dict[str, Path] = {}
    first = _words(_set_folder_name(Path(sets[0]))) if sets else []
    for number, labels in enumerate(map(Path, sets)):
        resolved = labels.resolve()
        if number and any(Path(other).resolve() == resolved for other in sets[:number]):
            raise ValueError(f"{labels}: labels set given twice (--photo-labels)")
        if not number:
            names.append(None)
            continue
        words = _words(_set_folder_name(labels))
        shared = 0
        while shared < min(len(words), len(first)) and words[shared] == first[shared]:
            shared += 1
        name = "_".join(words[shared:] or words)
        if not name:
            raise ValueError(f"{labels}: no name for this labels set (its folder name has no letter or digit)")
        if name in seen:
            raise ValueError(f"{labels}: labels set named {name!r} like {seen[name]}; rename one of the folders "
                             "(each further set is named by its folder name less the first set's leading words)")
        seen[name] = labels
        names.append(name)
    return names


def read_label(path: Path, where: str = "") -> np.ndarray:
    """A label PNG as a bool (H, W) map (True: mask pixels), checked: readable, single-channel,
    only 0 and 255, not empty (every labelled photo shows a mask; an empty label is a lost one)."""
    if not path.is_file():
        raise PhotoLabelError(f"{path}: label PNG missing{where}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "1":  # 1-bit PNG: 0/255 once in 8 bits
                image = image.convert("L")
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PhotoLabelError(f"{path}: unreadable label PNG{where} ({type(error).__name__}: {error})") from None
    if mode not in ("L", "1"):
        raise PhotoLabelError(f"{path}: label must be a single-channel 8-bit PNG, got mode {mode}{where}")
    stray = np.unique(values[(values != 0) & (values != 255)])
    if len(stray):
        shown = ", ".join(str(v) for v in stray[:5]) + (", ..." if len(stray) > 5 else "")
        raise PhotoLabelError(f"{path}: label not binary: values other than 0 and 255 ({shown}){where}")
    if not (values == 255).any():
        raise PhotoLabelError(f"{path}: label is empty (no mask pixel){where}")
    return values == 255


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]} (HxW)"


def load_photo_labels(labels: str | Path, photo_dir: str | Path) -> list[PhotoLabel]:
    """Every row of the labels CSV, checked against the contract (module docstring) and against
    the photos of ``photo_dir``: their labels read and compared with the photos, in the CSV's order.
    Raises ``PhotoLabelError`` at the first problem."""
    path = labels_csv(labels)
    photo_dir = Path(photo_dir)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PhotoLabelError(f"{path}: unreadable CSV ({type(error).__name__}: {error})") from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    if tuple(header[:len(LABEL_COLUMNS)]) != LABEL_COLUMNS:
        raise PhotoLabelError(f"{path}: header is {','.join(header) or '(empty)'!r}, "
                              f"expected {','.join(LABEL_COLUMNS)!r} (then any extra columns)")
    extra = header[len(LABEL_COLUMNS):]
    if "" in extra or len(set(header)) != len(header):
        raise PhotoLabelError(f"{path}: header {','.join(header)!r} has an empty or repeated column name")
    out: list[PhotoLabel] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise PhotoLabelError(f"{path} line {line}: {len(row)} fields, expected {len(header)}")
        cells = dict(zip(header, (cell.strip() for cell in row), strict=True))
        photo, label, mask_type, wear = (cells[column] for column in LABEL_COLUMNS)
        if mask_type not in MASK_TYPES:
            raise PhotoLabelError(f"{path} line {line}: unknown mask_type {mask_type!r} "
                                  f"(known: {', '.join(MASK_TYPES)})")
        if wear not in WEARS:
            raise PhotoLabelError(f"{path} line {line}: unknown wear {wear!r} (known: {', '.join(WEARS)})")
        category = cells.get(CATEGORY)
        if category is not None and not CATEGORY_NAME.fullmatch(category):
            raise PhotoLabelError(f"{path} line {line}: bad category {category!r} (lowercase letters, digits, "
                                  "_ or -, not empty)")
        if photo in seen:
            raise PhotoLabelError(f"{path} line {line}: photo {photo} labelled twice (first on line {seen[photo]})")
        seen[photo] = line
        photo_path = photo_dir / photo
        if not photo or not photo_path.is_file():
            raise PhotoLabelError(f"{photo_path}: photo missing from {photo_dir} ({path.name} line {line})")
        where = f" ({path.name} line {line}, photo {photo})"
        mask = read_label(path.parent / label, where)
        try:
            shape = load_image(photo_path).shape[:2]
        except BadImage as error:
            raise PhotoLabelError(f"{photo_path}: unreadable photo ({error})") from None
        if mask.shape != shape:
            raise PhotoLabelError(f"{path.parent / label}: label is {_size(mask.shape)} but its photo {photo} is "
                                  f"{_size(shape)}{where}")
        out.append(PhotoLabel(photo_path, path.parent / label, mask_type, wear, shape, category))
    if not out:
        raise PhotoLabelError(f"{path}: no labelled photos")
    return out

"""The labels of real photos (``unmask.evaluation.labels``): the contract's every breach is one
line that names the file, and the real labelled set, once it is in the repository, keeps to it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.testdata import REAL_MASKED, REPO
from tests.unmask.evaluation.testutils import LABELLED, PHOTO_SHAPE, write_labelled_photos
from unmask.evaluation.labels import LABELS_FILE, MASK_TYPES, WEARS, PhotoLabelError, load_photo_labels

REAL_LABELS = REPO / "labels" / "real-masked-photos"


@pytest.fixture
def labelled(tmp_path):
    return write_labelled_photos(tmp_path)


def test_good_labels_load_in_csv_order(labelled):
    photos, labels = labelled
    loaded = load_photo_labels(labels, photos)
    assert [label.photo.name for label in loaded] == list(LABELLED)
    assert loaded[0].label == labels / "masks" / "a.png" and loaded[0].size == PHOTO_SHAPE
    assert (loaded[2].mask_type, loaded[2].wear) == ("n95", "correct")
    assert [label.photo.name for label in load_photo_labels(labels / LABELS_FILE, photos)] == list(LABELLED)


def _rewrite(labels, line: int, row: str) -> None:
    lines = (labels / LABELS_FILE).read_text().splitlines()
    lines[line] = row
    (labels / LABELS_FILE).write_text("\n".join(lines) + "\n")


def _save(path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _binary(shape=PHOTO_SHAPE) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[10:20, 10:20] = 255
    return out


# (how to break the labels, the file the message names (relative to the tmp root), words it holds)
BREACHES = {
    "missing csv": (lambda photos, labels: (labels / LABELS_FILE).unlink(), "labels/labels.csv", "missing"),
    "missing folder": (lambda photos, labels: __import__("shutil").rmtree(labels), "labels", "no such labels folder"),
    "wrong header": (lambda photos, labels: _rewrite(labels, 0, "photo,mask,mask_type,wear"), "labels/labels.csv",
                     "expected 'photo,label,mask_type,wear'"),
    "unknown mask type": (lambda photos, labels: _rewrite(labels, 2, "a.png,masks/a.png,visor,correct"),
                          "labels/labels.csv", "line 3: unknown mask_type 'visor'"),
    "unknown wear": (lambda photos, labels: _rewrite(labels, 1, "a.png,masks/a.png,surgical,forehead"),
                     "labels/labels.csv", "line 2: unknown wear 'forehead'"),
    "photo missing": (lambda photos, labels: (photos / "b.png").unlink(), "photos/b.png", "photo missing"),
    "label missing": (lambda photos, labels: (labels / "masks" / "c.png").unlink(), "labels/masks/c.png",
                      "label PNG missing"),
    "label unreadable": (lambda photos, labels: (labels / "masks" / "c.png").write_bytes(b"\x89PNG not really"),
                         "labels/masks/c.png", "unreadable label PNG"),
    "label size": (lambda photos, labels: _save(labels / "masks" / "d.png", _binary((64, 48))), "labels/masks/d.png",
                   "label is 64x48 (HxW) but its photo d.png is 48x64 (HxW)"),
    "label not binary": (lambda photos, labels: _save(labels / "masks" / "a.png", _binary() // 2), "labels/masks/a.png",
                         "not binary"),
    "label empty": (lambda photos, labels: _save(labels / "masks" / "a.png", np.zeros(PHOTO_SHAPE, np.uint8)),
                    "labels/masks/a.png", "label is empty"),
    "label in colour": (lambda photos, labels: _save(labels / "masks" / "b.png", np.dstack([_binary()] * 3)),
                        "labels/masks/b.png", "single-channel"),
    "photo twice": (lambda photos, labels: _rewrite(labels, 4, "a.png,masks/a.png,cloth,chin"), "labels/labels.csv",
                    "labelled twice"),
}


@pytest.mark.parametrize("breach", list(BREACHES))
def test_each_breach_is_one_line_naming_the_file(tmp_path, labelled, breach):
    photos, labels = labelled
    damage, file, words = BREACHES[breach]
    damage(photos, labels)
    with pytest.raises(PhotoLabelError) as caught:
        load_photo_labels(labels, photos)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / file)), message
    assert words in message, message


def test_real_labels_keep_the_contract():
    if not (REAL_LABELS / LABELS_FILE).is_file():
        pytest.skip(f"no real labels yet: {REAL_LABELS / LABELS_FILE} is not in the repository")
    if not REAL_MASKED.is_dir():
        pytest.skip(f"the real masked photos are not here: {REAL_MASKED}")
    loaded = load_photo_labels(REAL_LABELS, REAL_MASKED)  # every row, every label PNG checked
    assert loaded and {label.mask_type for label in loaded} <= set(MASK_TYPES)
    assert {label.wear for label in loaded} <= set(WEARS)

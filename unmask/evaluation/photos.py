"""Real masked photos (``--photos``): ``Unmasker`` end to end (detection, alignment, both stages,
paste-back) on each photo; faces found or not, and with hand-drawn labels (``--photo-labels``,
see ``labels``) the Dice and IoU of the predicted map pasted back onto the photo against the label.

Scoring with labels: per photo, ``result.map > 0`` against ``label > 0`` over the whole photo
(``unmask.metrics.segmentation``); a photo where no face is found has no predicted map and scores
Dice 0 and IoU 0: it is counted, never dropped. The reported values are means over the photos,
overall, per mask type, per wear and, where the labels have that column, per category
(``label_breakdown``). ``mask_left``: the share of a label's pixels outside the region stage 2 filled
(the map grown by ``unmask.predict.MAP_GROWTH``), i.e. mask still visible in the output (1 where no
face is found); Dice alone hides a thin rim of mask left round the map.

Several labels sets are scored one at a time, each under its name (``labels.label_set_names``): its own
scores group, table and figures (``photos_group``, ``photos_file``, ``worst_photos_file``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from maskgen.align import map_to_photo
from maskgen.landmarks import NoFace
from maskgen.source import IMAGE_EXTENSIONS, BadImage, load_image
from unmask.metrics import segmentation

from . import photos_group
from .figures import WorstK, label_overlay, write_photo_sheet, write_worst_photos
from .labels import CATEGORY, MASK_TYPES, WEARS, PhotoLabel, read_label
from .scores import Scores

if TYPE_CHECKING:
    from unmask.predict import Unmasker

PHOTO_COLUMNS = ("file", "face", "coverage_pred", "reason")
LABEL_COLUMNS = ("mask_type", "wear", "coverage_label", "dice", "iou", "mask_left")
NO_LABELS = "no labelled photos (--photo-labels)"
# metrics.json keys of the breakdowns: photos/dice_mask_<type>, photos/n_wear_<wear>, ... (every value of the
# contract, null where none); then photos/dice_category_<category>, ... (the categories present)
GROUPINGS = {"mask": ("mask_type", MASK_TYPES), "wear": ("wear", WEARS)}
CATEGORY_GROUPING = "category"


def worst_photos_file(label_set: str | None = None) -> str:
    """The lowest-Dice figure of a labels set: ``photos_worst_dice.png``, ``photos_<name>_worst_dice.png``."""
    return f"{photos_group(label_set)}_worst_dice.png"


def photo_sheet_file(label_set: str | None = None) -> str:
    """The contact sheet of a labels set (or of the unlabelled photos): ``photos.png``, ``photos_<name>.png``."""
    return f"{photos_group(label_set)}.png"


WORST_PHOTOS_FILE = worst_photos_file()


def groupings(table: pd.DataFrame) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The breakdowns of a labelled photo table: by mask type and wear, and by category (sorted) where it has
    that column."""
    if CATEGORY not in table.columns:
        return dict(GROUPINGS)
    return {**GROUPINGS, CATEGORY_GROUPING: (CATEGORY, tuple(sorted(table[CATEGORY].dropna().unique())))}


def list_photos(photo_dir: Path, max_photos: int | None = None) -> list[Path]:
    photos = sorted(p for p in Path(photo_dir).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return photos[:max_photos] if max_photos is not None else photos


def labelled_photos(labels: Sequence[PhotoLabel], max_photos: int | None = None) -> list[PhotoLabel]:
    """The labelled photos an evaluation runs on: sorted by file name, the first ``max_photos``."""
    chosen = sorted(labels, key=lambda label: label.photo.name)
    return chosen[:max_photos] if max_photos is not None else chosen


def face_box(result: Any, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the aligned crop's footprint on the photo; None for aligned input."""
    if result.matrix is None:
        return None
    footprint = map_to_photo(np.full(result.crop_map.shape, 255, np.uint8), result.matrix, shape)
    ys, xs = np.nonzero(footprint)
    if not len(ys):
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def evaluate_photos(unmasker: Unmasker, photo_dir: Path, max_photos: int | None, sheet_rows: int,
                    figure_dir: Path | None, labels: Sequence[PhotoLabel] | None = None,
                    worst: int = 8, label_set: str | None = None) -> tuple[Scores, pd.DataFrame, list[str]]:
    """Run ``Unmasker`` on real masked photos: detection, alignment, both stages, paste-back.

    Without ``labels``: the first ``max_photos`` photos of ``photo_dir`` by name; counts photos
    without a detectable face (``NoFace``). With ``labels`` (``labels.load_photo_labels``): the
    labelled photos (``labelled_photos``), each also scored against its label, and the ``worst``
    photos with a face found by Dice drawn in ``worst_photos_file(label_set)``. Returns (scores, one
    row per photo, figure files written)."""
    items: list[tuple[Path, PhotoLabel | None]]
    if labels is None:
        items = [(path, None) for path in list_photos(photo_dir, max_photos)]
    else:
        items = [(label.photo, label) for label in labelled_photos(labels, max_photos)]
    rows, shown = [], []
    worst_k = WorstK(worst if figure_dir is not None and labels is not None else 0)
    for path, label in items:
        row: dict[str, Any] = {"file": path.name, "face": False, "coverage_pred": math.nan, "reason": None}
        truth = None
        if label is not None:
            truth = read_label(label.label)
            row.update(mask_type=label.mask_type, wear=label.wear, coverage_label=float(truth.mean()),
                       dice=0.0, iou=0.0, mask_left=1.0)  # no face found: no predicted map, all mask left
            if label.category is not None:
                row[CATEGORY] = label.category
        try:
            photo = load_image(path)
            result = unmasker(photo, aligned=False)
        except NoFace as error:
            row["reason"] = f"no face: {error}"
        except BadImage as error:
            row["reason"] = f"unreadable: {error}"
        else:
            predicted = result.map > 0
            row.update(face=True, coverage_pred=float(predicted.mean()))
            if truth is not None:
                counts = segmentation.confusion_counts(predicted, truth)
                filled = unmasker.photo_map(photo, result.faces, filled=True) > 0
                row.update(dice=counts.dice, iou=counts.iou, mask_left=mask_left(truth, filled))
                if worst_k.would_keep(counts.dice):
                    panels = label_overlay(photo, predicted, truth, face_box(result, photo.shape))
                    worst_k.add(counts.dice, (row, panels))
            if len(shown) < sheet_rows:
                shown.append((row, photo, result))
        rows.append(row)
    columns = list(PHOTO_COLUMNS) + (list(LABEL_COLUMNS) if labels is not None else [])
    if labels is not None and any(label.category is not None for label in labels):
        columns.append(CATEGORY)
    table = pd.DataFrame(rows, columns=columns)
    written = []
    if figure_dir is not None and shown:
        written.append(write_photo_sheet(figure_dir / photo_sheet_file(label_set), shown, unmasker.resolution))
    if figure_dir is not None and worst_k.items():
        written.append(write_worst_photos(figure_dir / worst_photos_file(label_set), worst_k.items(),
                                          unmasker.resolution))
    return photo_scores(table), table, written


def mask_left(truth: np.ndarray, filled: np.ndarray) -> float:
    """The share of the label's pixels outside the region stage 2 filled: mask still in the output
    (0 for a label with no pixel)."""
    total = int(np.count_nonzero(truth))
    return float(np.count_nonzero(truth & ~filled) / total) if total else 0.0


def label_breakdown(table: pd.DataFrame, column: str, order: Sequence[str]) -> pd.DataFrame:
    """Per group of ``column`` (in ``order``, only groups present): n, no face, mean Dice and IoU."""
    groups = table.groupby(column, sort=False)
    out = pd.DataFrame({"n": groups.size(), "no_face": groups["face"].apply(lambda f: int((~f.astype(bool)).sum())),
                        "dice": groups["dice"].mean(), "iou": groups["iou"].mean()})
    return out.reindex([g for g in order if g in out.index])


def photo_scores(table: pd.DataFrame) -> Scores:
    n = len(table)
    faces = int(table["face"].sum())
    no_faces = "no photos" if not n else "no face found in any photo"
    scores: Scores = {
        "count": (float(n), None), "faces_found": (float(faces), None), "no_face": (float(n - faces), None),
        "no_face_rate": ((n - faces) / n, None) if n else (None, "no photos"),
        "coverage": (float(table.loc[table["face"], "coverage_pred"].mean()), None) if faces else (None, no_faces),
    }
    if "dice" not in table.columns:
        return {**scores, "dice": (None, NO_LABELS), "iou": (None, NO_LABELS), "mask_left": (None, NO_LABELS)}
    if not n:
        return {**scores, "dice": (None, "no photos"), "iou": (None, "no photos"), "mask_left": (None, "no photos")}
    scores.update({
        "dice": (float(table["dice"].mean()), None), "iou": (float(table["iou"].mean()), None),
        "dice_face_found": (float(table.loc[table["face"], "dice"].mean()), None) if faces else (None, no_faces),
        "iou_face_found": (float(table.loc[table["face"], "iou"].mean()), None) if faces else (None, no_faces),
        "mask_left": (float(table["mask_left"].mean()), None),
        "mask_left_face_found": (float(table.loc[table["face"], "mask_left"].mean()), None) if faces else (
            None, no_faces),
        "coverage_label": (float(table["coverage_label"].mean()), None),
    })
    for prefix, (column, order) in groupings(table).items():
        groups = label_breakdown(table, column, order)
        for group in order:
            present = group in groups.index
            why = f"no labelled photo with {column} {group}"
            scores[f"n_{prefix}_{group}"] = (float(groups.loc[group, "n"]) if present else 0.0, None)
            for metric in ("dice", "iou"):
                scores[f"{metric}_{prefix}_{group}"] = (float(groups.loc[group, metric]), None) if present else (
                    None, why)
    return scores

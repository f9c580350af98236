"""Real masked photos (``--photos``): ``Unmasker`` end to end (detection, alignment, both stages,
paste-back) on each photo; faces found or not, and whether the predicted crop map is a plausible
face mask (``mask_plausibility`` against the alignment template)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from maskgen.landmarks import NoFace
from maskgen.source import IMAGE_EXTENSIONS, BadImage, load_image
from unmask.predict import Unmasker

from .figures import write_photo_sheet
from .plausibility import mask_plausibility
from .scores import Scores


def list_photos(photo_dir: Path, max_photos: int | None = None) -> list[Path]:
    photos = sorted(p for p in Path(photo_dir).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return photos[:max_photos] if max_photos is not None else photos


def evaluate_photos(unmasker: Unmasker, photo_dir: Path, max_photos: int | None, sheet_rows: int,
                    figure_dir: Path | None) -> tuple[Scores, pd.DataFrame, list[str]]:
    """Run ``Unmasker`` on real masked photos: detection, alignment, both stages, paste-back.

    Counts photos without a detectable face (``NoFace``) and, of those with one, the photos whose
    predicted crop map is a plausible face mask (``mask_plausibility``). Returns (scores, one row
    per photo, figure files written)."""
    rows, shown = [], []
    for path in list_photos(photo_dir, max_photos):
        row: dict[str, Any] = {"file": path.name, "face": False, "plausible": False, "coverage": math.nan,
                               "centroid_y": math.nan, "reason": None}
        try:
            photo = load_image(path)
            result = unmasker(photo, aligned=False)
        except NoFace as error:
            row["reason"] = f"no face: {error}"
        except BadImage as error:
            row["reason"] = f"unreadable: {error}"
        else:
            # judged against the template the crop was aligned to (the photo's landmarks are not kept)
            verdict = mask_plausibility(result.crop_map, None, unmasker.face_scale)
            size = result.crop_map.shape[0]
            row.update(face=True, plausible=verdict.plausible, coverage=verdict.coverage, reason=verdict.reason,
                       centroid_y=verdict.centroid[1] / size if verdict.centroid else math.nan)
            if len(shown) < sheet_rows:
                shown.append((row, photo, result))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["file", "face", "plausible", "coverage", "centroid_y", "reason"])
    written = []
    if figure_dir is not None and shown:
        written.append(write_photo_sheet(figure_dir, shown, unmasker.resolution))
    return photo_scores(table), table, written


def photo_scores(table: pd.DataFrame) -> Scores:
    n = len(table)
    faces = int(table["face"].sum())
    plausible = int(table["plausible"].sum())
    no_faces = "no photos" if not n else "no face found in any photo"
    return {
        "count": (float(n), None), "faces_found": (float(faces), None), "no_face": (float(n - faces), None),
        "no_face_rate": ((n - faces) / n, None) if n else (None, "no photos"),
        "plausible_count": (float(plausible), None),
        "plausible_mask_rate": (plausible / faces, None) if faces else (None, no_faces),
        "coverage": (float(table.loc[table["face"], "coverage"].mean()), None) if faces else (None, no_faces),
    }

"""``unmask predict`` on files and folders: each planned input unmasked (``unmask.predict.Unmasker``) and its
outputs written, its comparison sheet drawn, every face recorded in results.jsonl. The output names are
planned before anything runs (``unmask.outputs.plan_outputs``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from maskgen.files import write_bytes_atomic, write_png_atomic
from maskgen.landmarks import NoFace
from maskgen.source import BadImage, error_text

from .outputs import MAX_FACES, MIN_FACE, PlannedOutput, PredictError, PredictSummary, shown
from .predict import FaceResult, Unmasker, UnmaskResult, _photo

COMPARE_MAX_SIDE = 1024  # px: each panel of NAME_compare.png (input | map overlay | output) at most this size
MAP_TINT_RGB, MAP_TINT_ALPHA = (255, 0, 0), 0.45  # the map overlay: red, as the evaluation's photo figures
BOX_RGB = (0, 255, 0)  # each face's detector box on the overlay


def map_overlay(photo: np.ndarray, photo_map: np.ndarray, faces: Sequence[FaceResult] = ()) -> np.ndarray:
    """The photo with the map tinted red and each face's detector box outlined in green."""
    overlay = photo.copy()
    masked = photo_map > 0
    overlay[masked] = ((1 - MAP_TINT_ALPHA) * overlay[masked] + MAP_TINT_ALPHA * np.float32(MAP_TINT_RGB) + 0.5
                       ).astype(np.uint8)
    thickness = max(1, round(max(photo.shape[:2]) / 400))
    for face in faces:
        cv2.rectangle(overlay, face.box[:2], (face.box[2] - 1, face.box[3] - 1), BOX_RGB, thickness)
    return overlay


def compare_sheet(photo: np.ndarray, result: UnmaskResult) -> np.ndarray:
    """input | map overlay | output side by side (RGB), each panel at most ``COMPARE_MAX_SIDE`` px."""
    panels = [photo, map_overlay(photo, result.map, result.faces), result.image]
    h, w = photo.shape[:2]
    scale = min(1.0, COMPARE_MAX_SIDE / max(h, w))
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        panels = [cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels]
    gap = np.full((panels[0].shape[0], max(2, panels[0].shape[1] // 100), 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def predict_files(unmasker: Unmasker, plan: list[PlannedOutput], aligned: bool | None = None,
                  on_skip: Callable[[str, str], None] | None = None, *, results: Path | None = None,
                  max_faces: int = MAX_FACES, min_face: int = MIN_FACE, save_crops: bool = False,
                  save_maps: bool = False, compare: bool = False) -> PredictSummary:
    """Unmask each planned input and write its outputs: NAME.png and NAME_map.png; with ``compare``
    NAME_compare.png; with ``save_crops`` each face's aligned crop and output crop, with ``save_maps`` its
    crop map. An input that cannot be used (unreadable, no face, ...) is skipped with its reason and the rest
    go on; a failed write stops the run (PredictError). ``results`` (a file): one JSON line per face (input;
    the outputs written: image, map, compare, and the face's crop_input, crop_output, crop_map; face index,
    box, 5 points, coverage, seconds) and per input skipped (input, skipped: reason), written when the run
    ends, stopped or not."""
    summary = PredictSummary()
    records: list[dict] = []
    finished = False
    try:
        for item in plan:
            try:
                photo = _photo(item.source)
                result = unmasker(photo, aligned=aligned, max_faces=max_faces, min_face=min_face)
            except (BadImage, NoFace) as err:
                reason = str(err)
            except Exception as err:  # a library error on a strange file must not end the run
                reason = error_text(err, item.source)
            else:
                _write_outputs(item, photo, result, summary.done, save_crops, save_maps, compare)
                written = {"image": item.image, "map": item.map, **({"compare": item.compare} if compare else {})}
                for index, face in enumerate(result.faces):
                    crops = {**({"crop_input": item.face(index, "crop"), "crop_output": item.face(index, "output")}
                                if save_crops else {}),
                             **({"crop_map": item.face(index, "map")} if save_maps else {})}
                    records.append({"input": shown(item.source),
                                    **{key: shown(path) for key, path in {**written, **crops}.items()},
                                    "face": index, **face.record()})
                summary.done += 1
                summary.faces += len(result.faces)
                continue
            summary.skipped.append((shown(item.source), reason))
            records.append({"input": shown(item.source), "skipped": reason})
            if on_skip:
                on_skip(shown(item.source), reason)
        finished = True
    finally:
        if results is not None:
            text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            try:
                results.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(results, text.encode("utf-8", "surrogateescape"))
            except OSError as err:
                if finished:  # else the error that stopped the run is the one to tell
                    raise PredictError(f"cannot write {shown(results)}: {err.strerror or err}") from None
    return summary


def _write_outputs(item: PlannedOutput, photo: np.ndarray, result: UnmaskResult, done: int, save_crops: bool,
                   save_maps: bool, compare: bool) -> None:
    rgb = [(item.image, result.image)]
    gray = [(item.map, result.map)]
    if compare:
        rgb.append((item.compare, compare_sheet(photo, result)))
    for index, face in enumerate(result.faces):
        if save_crops:
            rgb += [(item.face(index, "crop"), face.crop_input), (item.face(index, "output"), face.crop_output)]
        if save_maps:
            gray.append((item.face(index, "map"), face.crop_map))
    for target, pixels, color in [(t, p, True) for t, p in rgb] + [(t, p, False) for t, p in gray]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not color:
                write_png_atomic(target, pixels)
                continue
            # BGR for OpenCV in place, and back after: no second copy of a 100-Mpx result.
            in_place = pixels.flags.writeable and pixels.flags.c_contiguous
            bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR, dst=pixels) if in_place else None
            try:
                write_png_atomic(target, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if bgr is None else bgr)
            finally:
                if bgr is not None:
                    cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
        except OSError as err:
            raise PredictError(f"cannot write {shown(target)}: {err.strerror or err} "
                               f"({done} inputs done before)") from None

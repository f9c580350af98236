"""Figures of an evaluation, in the paper's style: one row per sample, panels side by side
(input | predicted map | output | ground truth), a label strip above each row, column titles on
top. PNG via cv2. Tiles are the evaluation resolution (at least ``MIN_TILE`` so labels stay
legible), so a 512 px model gives a 512 px sheet with no special case.

Selections are streaming and bounded (``FirstPerGroup``, ``WorstK``, ``FigureSamples``): an
evaluation keeps only the images its figures show, whatever the split's size.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from maskgen.files import write_png_atomic

from . import method_label
from .samples import is_turned

if TYPE_CHECKING:
    from .samples import EvalBatch

MIN_TILE = 128  # px; below this the label text would be wider than the panel
LABEL_COLOR = (255, 255, 255)
STRIP_COLOR = (32, 32, 32)
TITLE_COLOR = (255, 220, 120)


def _font_scale(tile: int) -> float:
    return max(0.4, tile / 420)


def _strip_height(tile: int) -> int:
    return int(round(22 * _font_scale(tile) / 0.4))


def as_rgb_tile(image: np.ndarray | None, tile: int) -> np.ndarray:
    """An RGB uint8 tile x tile panel: maps (H x W, bool, 0/1 or 0/255) become white on black,
    non-square images (photos) are letterboxed, a missing panel is grey."""
    if image is None:
        return np.full((tile, tile, 3), 96, np.uint8)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image.astype(bool) if image.dtype == bool or image.max() <= 1 else image > 127
        image = np.repeat((image * np.uint8(255))[..., None].astype(np.uint8), 3, axis=2)
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    out = np.zeros((tile, tile, 3), np.uint8)
    top, left = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = resized
    return out


def text_strip(text: str, width: int, tile: int, color: tuple[int, int, int] = LABEL_COLOR) -> np.ndarray:
    """A dark strip of one line of text, cut to fit ``width``."""
    height, scale = _strip_height(tile), _font_scale(tile)
    strip = np.full((height, width, 3), STRIP_COLOR, np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    while text and cv2.getTextSize(text, font, scale, thickness)[0][0] > width - 8:
        text = text[:-2] + "…" if len(text) > 2 else ""
    text = text.replace("…", "~")  # Hershey fonts are ASCII only
    baseline = height - int(round(6 * scale / 0.4))
    cv2.putText(strip, text, (4, baseline), font, scale, color, thickness, cv2.LINE_AA)
    return strip


def contact_sheet(rows: Sequence[Sequence[np.ndarray | None]], titles: Sequence[str], labels: Sequence[str],
                  tile: int, heading: str | None = None) -> np.ndarray:
    """Rows of panels under column ``titles``; each row under its own label strip."""
    columns = len(titles)
    width = columns * tile
    header = np.hstack([text_strip(t, tile, tile, TITLE_COLOR) for t in titles])
    parts = ([text_strip(heading, width, tile, TITLE_COLOR)] if heading else []) + [header]
    for panels, label in zip(rows, labels, strict=True):
        if len(panels) != columns:
            raise ValueError(f"a row has {len(panels)} panels for {columns} titles")
        parts.append(text_strip(label, width, tile))
        parts.append(np.hstack([as_rgb_tile(p, tile) for p in panels]))
    if not rows:
        parts.append(text_strip("(no samples)", width, tile))
    return np.vstack(parts)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png_atomic(path, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    return path


def tile_size(resolution: int) -> int:
    return max(resolution, MIN_TILE)


def safe_name(text: Any) -> str:
    """A file-name part from a metadata value (mask types are plain words, but be safe)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))
    return cleaned or "none"


class FirstPerGroup:
    """The first ``n`` items of each group, in arrival order (shard order: deterministic)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.groups: dict[Hashable, list[Any]] = {}

    def wants(self, group: Hashable) -> bool:
        return len(self.groups.get(group, ())) < self.n

    def add(self, group: Hashable, item: Any) -> None:
        if self.wants(group):
            self.groups.setdefault(group, []).append(item)


class WorstK:
    """The ``k`` items with the lowest scores (NaN and inf never qualify); ties: earliest first."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, Any]] = []  # (-score, -arrival, item): root = best kept
        self._arrival = itertools.count()

    def would_keep(self, score: float) -> bool:
        if self.k <= 0 or not math.isfinite(score):
            return False
        return len(self._heap) < self.k or score < -self._heap[0][0]

    def add(self, score: float, item: Any) -> None:
        if not self.would_keep(score):
            return
        entry = (-score, -next(self._arrival), item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[tuple[float, Any]]:
        """(score, item), worst first."""
        return [(-s, item) for s, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


class FigureSamples:
    """The samples the figures show, chosen while streaming: the first few per mask type and per
    head pose, and the worst by the main method's PSNR and by stage-1 Dice."""

    def __init__(self, rows: int, failures: int, main_method: str | None) -> None:
        self.main_method = main_method
        self.by_mask_type = FirstPerGroup(rows)
        self.by_pose = FirstPerGroup(rows)
        self.worst_psnr = WorstK(failures)
        self.worst_dice = WorstK(failures)

    def add(self, batch: EvalBatch, pred_map: np.ndarray | None,
            outputs: dict[str, tuple[np.ndarray, np.ndarray | None]], psnr: np.ndarray | None,
            dice: np.ndarray | None) -> None:
        main = outputs[self.main_method][0] if self.main_method else None
        for i, info in enumerate(batch.info):
            pose = "turned" if is_turned(info) else "frontal"
            psnr_i = float(psnr[i]) if psnr is not None and len(psnr) else math.nan
            dice_i = float(dice[i]) if dice is not None and len(dice) else math.nan
            wanted = (self.by_mask_type.wants(info["mask_type"]) or self.by_pose.wants(pose)
                      or self.worst_psnr.would_keep(psnr_i) or self.worst_dice.would_keep(dice_i))
            if not wanted:
                continue
            item = {"info": info, "masked": batch.masked[i], "gt": batch.unmasked[i], "gt_map": batch.gt_map[i],
                    "pred_map": None if pred_map is None else pred_map[i],
                    "output": None if main is None else main[i], "psnr": psnr_i, "dice": dice_i}
            self.by_mask_type.add(info["mask_type"], item)
            self.by_pose.add(pose, item)
            self.worst_psnr.add(psnr_i, item)
            self.worst_dice.add(dice_i, item)

    def write(self, out_dir: Path, resolution: int) -> list[str]:
        tile = tile_size(resolution)
        shows = f"output: {method_label(self.main_method)}" if self.main_method else "no output"
        titles = ["input", "predicted map", "output", "ground truth"]

        def row(item: dict[str, Any]) -> list[np.ndarray | None]:
            shown_map = item["pred_map"] if item["pred_map"] is not None else item["gt_map"]
            return [item["masked"], shown_map, item["output"], item["gt"]]

        def label(item: dict[str, Any], score: str = "") -> str:
            info = item["info"]
            yaw = f" yaw {info['yaw']:+.2f}" if np.isfinite(info["yaw"]) else ""
            return f"{info['key']} {info['mask_type']} cov {info['coverage']:.0%}{yaw}{score}"

        written = []

        def sheet(name: str, heading: str, items: list[dict[str, Any]], rows=None, labels=None, cols=None) -> None:
            image = contact_sheet(rows or [row(i) for i in items], cols or titles,
                                  labels or [label(i) for i in items], tile, heading)
            write_png(out_dir / name, image)
            written.append(name)

        for mask_type, items in sorted(self.by_mask_type.groups.items(), key=lambda kv: str(kv[0])):
            sheet(f"sheet_mask_{safe_name(mask_type)}.png", f"mask type {mask_type}; {shows}", items)
        for pose in ("frontal", "turned"):
            if pose in self.by_pose.groups:
                sheet(f"sheet_{pose}.png", f"{pose} faces; {shows}", self.by_pose.groups[pose])
        worst = self.worst_psnr.items()
        if worst:
            sheet("failures_psnr.png", f"lowest PSNR; {shows}", [i for _, i in worst],
                  labels=[label(i, f" PSNR {s:.2f} dB") for s, i in worst])
        worst = self.worst_dice.items()
        if worst:
            dice_titles = ["input", "predicted map", "ground-truth map", "output", "ground truth"]
            sheet("failures_dice.png", f"lowest stage-1 Dice; {shows}", [i for _, i in worst],
                  rows=[[i["masked"], i["pred_map"], i["gt_map"], i["output"], i["gt"]] for _, i in worst],
                  labels=[label(i, f" Dice {s:.3f}") for s, i in worst], cols=dice_titles)
        return written


def write_photo_sheet(path: Path, shown: list[tuple[dict[str, Any], np.ndarray, Any]], resolution: int) -> str:
    """``path`` (``photos.png``): for each (photo row, photo, ``UnmaskResult``) the photo, the aligned crop,
    the predicted map, the output crop and the pasted-back photo; returns the file name."""
    labels = [f"{row['file']} map {row['coverage_pred']:.0%} of the photo"
              + (f" Dice {row['dice']:.3f}" if "dice" in row else "") for row, _, _ in shown]
    sheet = contact_sheet(
        [[photo, r.crop_input, r.crop_map, r.crop_output, r.image] for _, photo, r in shown],
        ["photo", "aligned crop", "predicted map", "output crop", "pasted back"],
        labels, tile_size(resolution), "real masked photos")
    write_png(path, sheet)
    return path.name


LABEL_COLOR_RGB = (0, 255, 0)  # the hand-drawn label's contour
PREDICTION_RGB = (255, 0, 0)  # the tint of the predicted map
PREDICTION_ALPHA = 0.45
CROP_MARGIN = 0.15  # of the face box, on each side


def crop_box(shape: tuple[int, ...], box: tuple[int, int, int, int] | None,
             *maps: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): ``box`` (the face) or else the maps' extent, widened by
    ``CROP_MARGIN`` and kept inside the photo; the whole photo when there is neither."""
    h, w = shape[:2]
    if box is None:
        union = np.zeros((h, w), bool)
        for m in maps:
            union |= np.asarray(m, bool)
        ys, xs = np.nonzero(union)
        if not len(ys):
            return 0, h, 0, w
        box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    top, bottom, left, right = box
    dy, dx = round(CROP_MARGIN * (bottom - top)), round(CROP_MARGIN * (right - left))
    return max(0, top - dy), min(h, bottom + dy), max(0, left - dx), min(w, right + dx)


def label_overlay(photo: np.ndarray, predicted: np.ndarray, label: np.ndarray,
                  box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(photo crop, the same crop with the predicted map tinted red and the label's contour in
    green), cropped around the face ``box`` (top, bottom, left, right; None: around the maps)."""
    predicted, label = np.asarray(predicted, bool), np.asarray(label, bool)
    overlay = photo.astype(np.float32)
    overlay[predicted] = (1 - PREDICTION_ALPHA) * overlay[predicted] + PREDICTION_ALPHA * np.float32(PREDICTION_RGB)
    overlay = np.clip(np.rint(overlay), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(label.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    top, bottom, left, right = crop_box(photo.shape, box, predicted, label)
    thickness = max(1, round(max(bottom - top, right - left) / 120))
    cv2.drawContours(overlay, contours, -1, LABEL_COLOR_RGB, thickness)
    return photo[top:bottom, left:right].copy(), overlay[top:bottom, left:right].copy()


def write_worst_photos(path: Path, worst: list[tuple[float, tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]]],
                       resolution: int) -> str:
    """The labelled photos with the lowest Dice (``WorstK.items()`` of (photo row, ``label_overlay``)),
    one row each: the photo crop, and the label (green contour) over the prediction (red tint)."""
    tile = max(tile_size(resolution), 256)
    rows = [list(panels) for _, (_, panels) in worst]
    labels = [f"{row['file']} {row['mask_type']}/{row['wear']} Dice {dice:.3f} IoU {row['iou']:.3f}"
              for dice, (row, _) in worst]
    sheet = contact_sheet(rows, ["photo", "green: label, red: map"], labels, tile,
                          "lowest Dice, faces found")
    write_png(path, sheet)
    return path.name

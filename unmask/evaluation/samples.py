"""The samples of an evaluation: the split's shards read in order (the one place the evaluation
reads a dataset), decoded and resized batch by batch (``iter_eval_batches``), with the metadata
the tables keep (``META_COLUMNS``) and each crop's 68 landmarks. A shard that is short or unreadable
(``unmask.data.DataError``) or a sample that does not decode (``maskgen.reader.BadSample``) stops the
evaluation with one line naming the shard and key: scores over a silently smaller split would not compare."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.format import MAP, YAW_THRESHOLD
from maskgen.reader import decode_image, decode_meta
from unmask.data import resized_sample, split_samples

__all__ = ["META_COLUMNS", "EvalBatch", "is_turned", "iter_eval_batches", "iter_metadata", "native_resolution"]

META_COLUMNS = ("key", "mask_type", "coverage", "yaw", "variant", "wear", "generator", "identity", "source")


@dataclass
class EvalBatch:
    masked: np.ndarray  # N x R x R x 3 uint8 RGB
    unmasked: np.ndarray  # N x R x R x 3 uint8 RGB
    gt_map: np.ndarray  # N x R x R bool
    info: list[dict[str, Any]]  # META_COLUMNS per sample
    landmarks: list[np.ndarray | None]  # 68 x 2 in evaluation pixels, None when unknown

    def __len__(self) -> int:
        return len(self.masked)


def native_resolution(data: Path, split: str) -> int:
    """The side of the first sample's map: the resolution the split was built at."""
    for raw in split_samples(data, split):
        return int(decode_image(raw, MAP).shape[0])
    raise FileNotFoundError(f"no samples in {data} for split {split}")


def _sample_info(meta: dict[str, Any], key_: str, gt_map: np.ndarray) -> dict[str, Any]:
    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) else math.nan

    coverage = meta.get("coverage")
    return {
        "key": str(meta.get("key", key_)),
        "mask_type": meta.get("mask_type"),
        "coverage": float(coverage) if isinstance(coverage, (int, float)) else float(gt_map.mean()),
        "yaw": number(meta.get("yaw")),
        "variant": meta.get("variant"),
        "wear": meta.get("wear", "correct"),  # datasets made before wear variants: all worn correctly
        "generator": meta.get("generator"),  # None: made before the field (built-in or a pack, unknown)
        "identity": None if meta.get("identity") is None else str(meta["identity"]),
        "source": meta.get("source"),
    }


def _scaled_landmarks(meta: dict[str, Any], native: int, resolution: int) -> np.ndarray | None:
    points = np.asarray(meta.get("landmarks") or [], np.float64)
    if points.shape != (68, 2):
        return None
    return points * (resolution / float(meta.get("res") or native))


def iter_eval_batches(data: Path, split: str, resolution: int, batch_size: int,
                      max_samples: int | None = None) -> Iterator[EvalBatch]:
    """The split in shard order, decoded and resized to ``resolution`` (maps re-thresholded)."""
    native = native_resolution(data, split)
    items: list[tuple[dict[str, Any], dict[str, Any], np.ndarray | None]] = []
    seen = 0
    for raw in split_samples(data, split):
        if max_samples is not None and seen >= max_samples:
            break
        seen += 1
        sample = resized_sample(raw, resolution, flip=False)
        meta = decode_meta(raw)
        info = _sample_info(meta, sample["key"], sample["map"])
        items.append((sample, info, _scaled_landmarks(meta, native, resolution)))
        if len(items) == batch_size:
            yield _collate(items)
            items = []
    if items:
        yield _collate(items)


def _collate(items: list[tuple[dict[str, Any], dict[str, Any], np.ndarray | None]]) -> EvalBatch:
    samples, info, landmarks = zip(*items, strict=True)
    return EvalBatch(
        masked=np.stack([s["masked"] for s in samples]), unmasked=np.stack([s["unmasked"] for s in samples]),
        gt_map=np.stack([s["map"] for s in samples]).astype(bool), info=list(info), landmarks=list(landmarks),
    )


def iter_metadata(data: Path, split: str, max_samples: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(shard key, json metadata) of the first ``max_samples`` samples in shard order; no image is decoded."""
    for seen, raw in enumerate(split_samples(data, split)):
        if max_samples is not None and seen >= max_samples:
            break
        yield raw["__key__"], decode_meta(raw)


def is_turned(info: dict[str, Any]) -> bool:
    """The template variant of the mask (front/left/right) when known, else |yaw| as maskgen decides it."""
    if info.get("variant") in ("front", "left", "right"):
        return info["variant"] != "front"
    yaw = info.get("yaw")
    return isinstance(yaw, (int, float)) and math.isfinite(yaw) and abs(yaw) > YAW_THRESHOLD

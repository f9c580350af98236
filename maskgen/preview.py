"""Contact sheets of built datasets: masked | map | unmasked, one sample per row-cell."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from . import format as fmt


def decode_sample(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(masked RGB, map uint8 HxW, unmasked RGB, meta) from a raw WebDataset sample."""
    def rgb(data: bytes) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    binary = cv2.imdecode(np.frombuffer(sample[fmt.MAP], np.uint8), cv2.IMREAD_UNCHANGED)
    return rgb(sample[fmt.MASKED]), binary, rgb(sample[fmt.UNMASKED]), json.loads(sample[fmt.META])


def iter_samples(dataset: str | Path, split: str | None = None):
    """Raw samples of a dataset directory in shard order (no shuffling, no decoding)."""
    splits = [split] if split else list(fmt.SPLITS)
    urls = [p for s in splits for p in sorted(glob.glob(str(Path(dataset) / fmt.shard_glob(s))))]
    if not urls:
        raise FileNotFoundError(f"no shards in {dataset}" + (f" for split {split}" if split else ""))
    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False)


def contact_sheet(dataset: str | Path, n: int = 16, split: str | None = None, columns: int = 2,
                  tile: int = 192) -> np.ndarray:
    """An RGB image of the first n samples: each cell is masked | map | unmasked, labelled."""
    cells = []
    for sample in iter_samples(dataset, split):
        masked, binary, unmasked, meta = decode_sample(sample)
        parts = [cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
                 for im in (masked, np.dstack([binary] * 3), unmasked)]
        cell = np.hstack(parts)
        label = f"{meta['key']} {meta['mask_type']}/{meta['color']}/{meta['texture']} cov {meta['coverage']:.2f}"
        cv2.putText(cell, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cells.append(cell)
        if len(cells) >= n:
            break
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.hstack(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)

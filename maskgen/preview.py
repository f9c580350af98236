"""Contact sheets of built datasets: masked | map | unmasked, one sample per row-cell."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .reader import decode, iter_raw_samples


def contact_sheet(dataset: str | Path, n: int = 16, split: str | None = None, columns: int = 2,
                  tile: int = 192) -> np.ndarray:
    """An RGB image of the first n samples: each cell is masked | map | unmasked, labelled."""
    cells = []
    for raw in iter_raw_samples(dataset, split):
        sample = decode(raw)
        masked, binary, unmasked, meta = sample.masked, sample.map, sample.unmasked, sample.meta
        parts = [cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
                 for im in (masked, np.dstack([binary] * 3), unmasked)]
        cell = np.hstack(parts)
        label = f"{meta['key']} {meta['mask_type']}/{meta['color']}/{meta['texture']} cov {meta['coverage']:.2f}"
        cv2.putText(cell, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cells.append(cell)
        if len(cells) >= n:
            break
    if not cells:
        raise FileNotFoundError(f"no samples in {dataset}" + (f" for split {split}" if split else ""))
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.hstack(cells[i:i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)

"""Contact sheets of built datasets: masked | map | unmasked, one sample per row-cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .reader import decode, iter_raw_samples


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with a contact sheet's option on its own, or None: ``n`` and ``columns`` are counts,
    ``output`` a file name whose suffix OpenCV has a writer for (it picks the format by the suffix).
    ``contact_sheet`` checks its counts with it, ``maskgen preview`` each option given."""
    if name in ("n", "columns"):
        return None if isinstance(value, int) and value >= 1 else f"must be at least 1 (got {value})"
    if name == "output":
        suffix = Path(value).suffix
        if not suffix:
            return f"{Path(value).name!r} has no suffix to tell the image format; use e.g. .png or .jpg"
        return None if cv2.haveImageWriter(f"sheet{suffix}") else \
            f"no image format has the suffix {suffix!r}; use e.g. .png or .jpg"
    return None


def contact_sheet(dataset: str | Path, n: int = 16, split: str | None = None, columns: int = 2,
                  tile: int = 192) -> np.ndarray:
    """An RGB image of the first n samples: each cell is masked | map | unmasked, labelled."""
    for name, value in (("n", n), ("columns", columns)):
        problem = option_problem(name, value)
        if problem:
            raise ValueError(f"{name} {problem}")
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


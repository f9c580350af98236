"""Split assignment: no face (identity, or source image when identities are unknown) in two splits."""

from __future__ import annotations

import hashlib

from .format import SPLITS
from .source import SourceImage

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(text: str | tuple | list) -> tuple[float, float, float]:
    """'80/10/10', '0.8,0.1,0.1' or a sequence -> fractions summing to 1."""
    if isinstance(text, str):
        parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
        values = [float(p) for p in parts]
    else:
        values = [float(v) for v in text]
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, e.g. 80/10/10 (got {text!r})")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def _rank(seed: int, group: str) -> str:
    return hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()


def assign_splits(images: list[SourceImage], fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, str]:
    """{source rel: split}. CelebA's partition wins; else whole groups (identity or image) are split."""
    if any(im.partition for im in images):
        return {im.rel: im.partition for im in images if im.partition}
    groups = sorted({im.identity or f"image:{im.rel}" for im in images}, key=lambda g: _rank(seed, g))
    n = len(groups)
    bounds, acc = [], 0.0
    for frac in fractions:
        acc += frac
        bounds.append(round(acc * n))
    group_split = {}
    for i, group in enumerate(groups):
        group_split[group] = next(s for s, b in zip(SPLITS, bounds) if i < b) if i < bounds[-1] else SPLITS[-1]
    return {im.rel: group_split[im.identity or f"image:{im.rel}"] for im in images}

"""Split assignment: no face (identity, or source image when identities are unknown) in two splits."""

from __future__ import annotations

import hashlib
import math

from .format import SPLITS
from .source import SourceImage

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def fractions_problem(values, totals: tuple[float, ...] = (1.0,)) -> str | None:
    """Why ``values`` are not train/val/test fractions (three finite, non-negative numbers summing
    to one of ``totals``), or None when they are."""
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        return f"split fractions must be numbers (got {values!r})"
    if len(values) != len(SPLITS):
        return f"split fractions must be three numbers, train/val/test (got {len(values)})"
    if not all(math.isfinite(v) and v >= 0 for v in values):
        return f"split fractions must be finite and non-negative (got {'/'.join(f'{v:g}' for v in values)})"
    if not any(math.isclose(sum(values), total, rel_tol=1e-6) for total in totals):
        return (f"split fractions must sum to {' or '.join(f'{t:g}' for t in totals)} "
                f"(got {'/'.join(f'{v:g}' for v in values)}, sum {sum(values):g})")
    return None


def parse_fractions(text: str | tuple | list) -> tuple[float, float, float]:
    """'80/10/10', '0.8,0.1,0.1' or a sequence -> fractions summing to 1; ValueError (one line) otherwise."""
    if isinstance(text, str):
        parts = text.replace(",", "/").split("/")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError("split fractions are three numbers, e.g. 80/10/10 or 0.8,0.1,0.1 "
                             f"(got {text!r})") from None
    else:
        values = list(text)
    problem = fractions_problem(values, totals=(1.0, 100.0))
    if problem:
        raise ValueError(problem)
    total = sum(float(v) for v in values)
    return tuple(float(v) / total for v in values)  # type: ignore[return-value]


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
        group_split[group] = next(s for s, b in zip(SPLITS, bounds, strict=True) if i < b) \
            if i < bounds[-1] else SPLITS[-1]
    return {im.rel: group_split[im.identity or f"image:{im.rel}"] for im in images}

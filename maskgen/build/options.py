"""A build's options: ``BuildConfig``, each option's range (``option_problem``), and what build.json records
of them (``BuildConfig.identity``)."""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..align import DEFAULT_FACE_SCALE, SUPPORTED_RES
from ..compose import MaskOptions
from ..packs import pack_digest
from ..splits import DEFAULT_FRACTIONS, fractions_problem

FACE_SCALE_RANGE = (0.25, 1.0)  # 1: the tight 5-point crop (ArcFace's), which already cuts off the chin
BACKENDS = ("loky", "dask")
JPEG_QUALITY_RANGE = (1, 100)  # OpenCV's IMWRITE_JPEG_QUALITY
# Pairs per source image at most (--pairs): each pair of a face is another draw of mask, wear and look, and
# the planned samples are held in memory, so a slip of the finger (--pairs 1000000000) is refused up front.
MAX_PAIRS_PER_SOURCE = 100
# What build.json records of the inputs' content (see BuildConfig.identity); one written before it lacks them.
CONTENT_KEYS = ("source_content", "template_digests")


class BuildError(Exception):
    """A problem with the build's arguments or output folder (one-line message for the CLI)."""


@dataclass
class BuildConfig:
    source: str
    out: str
    res: int = 256
    pairs: int | None = None  # None: one pair per usable face
    seed: int = 0
    workers: int = -1  # joblib n_jobs: -1 = all cores
    shard_size: int = 1000
    mask: MaskOptions = field(default_factory=MaskOptions)
    split: tuple[float, float, float] = DEFAULT_FRACTIONS
    jpeg_quality: int = 95
    face_scale: float | tuple[float, float] = DEFAULT_FACE_SCALE  # one framing, or a range drawn per sample
    part: tuple[int, int] = (0, 1)  # (k, n), k in 0..n-1
    landmarks: str | None = None  # a landmarks.parquet of an earlier build of this source: skips detection
    backend: str = "loky"  # joblib backend; "dask" with scheduler=ADDRESS for a cluster
    scheduler: str | None = None
    progress: bool = True

    def validate(self) -> None:
        """Every field checked (one-line BuildError naming the option) before the build touches a file."""
        for name in _OPTION_CHECKS:
            problem = option_problem(name, getattr(self, name))
            if problem:
                raise BuildError(f"--{name.replace('_', '-')}: {problem}")
        if self.backend == "dask" and not self.scheduler:
            raise BuildError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
        if self.landmarks is not None and not Path(self.landmarks).is_file():
            raise BuildError(f"--landmarks {self.landmarks}: no such file")
        mask = self.mask
        try:  # the checks of MaskOptions.create, for options made without it (packs are loaded once)
            MaskOptions.create(dict(mask.type_weights), list(mask.templates), mask.light_match,
                               dict(mask.wear_weights), mask.template_share if mask.templates else None,
                               dict(mask.occluder_weights), mask.occluder_share, mask.print_share, mask.fold_share)
        except (ValueError, FileNotFoundError) as err:
            raise BuildError(str(err)) from None

    def identity(self, fingerprint: str, content: str) -> dict:
        """What the data depends on: a rerun must match this to resume into the same folder. ``fingerprint``:
        the sources' names; ``content``: their bytes (``plan.content_fingerprint``); ``template_digests``: the
        packs' files, in the order of ``mask.templates``."""
        identity = {"source_fingerprint": fingerprint, "source_content": content,
                    "template_digests": [pack_digest(pack) for pack in self.mask.templates],
                    "res": self.res, "pairs": self.pairs, "seed": self.seed, "shard_size": self.shard_size,
                    "mask": asdict(self.mask), "split": list(self.split), "jpeg_quality": self.jpeg_quality,
                    "face_scale": list(self.face_scale) if isinstance(self.face_scale, tuple) else self.face_scale,
                    "parts": self.part[1], "format_version": 1}
        return json.loads(json.dumps(identity))  # as it reads back from build.json


# --- the options' values ---------------------------------------------------------------------------
# Each check sees one option's value, whatever the others are: BuildConfig.validate applies them all, and
# ``maskgen build`` each value given while it parses the command line (a bad one is a usage error there),
# so each range is written here only.

def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _at_least(low: int) -> Callable[[Any], str | None]:
    return lambda value: None if _whole(value) and value >= low else \
        f"must be a whole number, at least {low} (got {value})"


def _pairs_problem(value: Any) -> str | None:
    return None if value is None else _at_least(1)(value)  # None: one pair per usable face


def _res_problem(value: Any) -> str | None:
    return None if _whole(value) and value in SUPPORTED_RES else \
        f"must be one of {', '.join(map(str, SUPPORTED_RES))} (got {value})"


def _workers_problem(value: Any) -> str | None:
    return None if _whole(value) and (value == -1 or value >= 1) else \
        f"must be -1 (all cores) or at least 1 (got {value})"


def _jpeg_quality_problem(value: Any) -> str | None:
    low, high = JPEG_QUALITY_RANGE
    return None if _whole(value) and low <= value <= high else f"must be in {low}..{high} (got {value})"


def _face_scale_problem(value: Any) -> str | None:
    low, high = FACE_SCALE_RANGE
    values = value if isinstance(value, tuple) and len(value) == 2 else (value,)
    fits = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and low <= v <= high for v in values)
    shown = "-".join(f"{v:g}" if isinstance(v, numbers.Real) else repr(v) for v in values)
    if fits and values[0] <= values[-1]:
        return None
    return (f"must be in {low:g}..{high:g}, the face's size in the crop, or a range LOW-HIGH of such values drawn "
            f"from per sample (default {DEFAULT_FACE_SCALE:g}; got {shown})")


def _part_problem(value: Any) -> str | None:
    k, n = value
    return None if _whole(k) and _whole(n) and n >= 1 and 0 <= k < n else f"use K/N with 1 <= K <= N (got {k + 1}/{n})"


def _backend_problem(value: Any) -> str | None:
    return None if value in BACKENDS else f"must be one of {', '.join(BACKENDS)} (got {value!r})"


_OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {  # BuildConfig field: its check
    "res": _res_problem,
    "pairs": _pairs_problem,
    "seed": _at_least(0),
    "workers": _workers_problem,
    "shard_size": _at_least(1),
    "jpeg_quality": _jpeg_quality_problem,
    "face_scale": _face_scale_problem,
    "split": fractions_problem,
    "part": _part_problem,
    "backend": _backend_problem,
}


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for BuildConfig's field ``name`` on its own, or None (also for a
    field without a check of its own)."""
    check = _OPTION_CHECKS.get(name)
    return None if check is None else check(value)

"""Reading built datasets: the one shard reader, the counterpart of ``shard.py``.

Used by ``maskgen preview``, unmask's loaders, the evaluation and the benchmarks. The format itself
(member names, ranges) is defined in ``maskgen.format``.

    for raw in iter_raw_samples("data/shards", "test"):
        sample = decode(raw)          # RGB masked/unmasked, uint8 map (0/255), metadata
"""

from __future__ import annotations

import itertools
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import format as fmt
from .files import read_json_object

RawSample = dict[str, Any]  # WebDataset's: "__key__", "__url__" and one bytes value per member


class BadSample(ValueError):
    """A sample whose members are missing or do not decode; the message names its key and shard."""


class BadShard(ValueError):
    """A shard that cannot be read to its end (missing, truncated, not a tar); the message names it.

    Not a ``BadSample``: the shard's remaining samples are lost, which skipping one sample would hide.
    """


@dataclass
class Sample:
    key: str
    masked: np.ndarray  # H x W x 3 uint8 RGB
    unmasked: np.ndarray  # H x W x 3 uint8 RGB
    map: np.ndarray  # H x W uint8, 0 or 255 (as stored)
    meta: dict[str, Any]  # the sample's json (``SampleMeta``); {} when the member is absent


def list_shards(dataset: str | Path, split: str) -> list[str]:
    """The shards of one split, in order."""
    return sorted(glob(str(Path(dataset) / fmt.shard_glob(split))))


def built_resolution(dataset: str | Path) -> int | None:
    """The crop size in pixels that ``maskgen build`` made the dataset's images at, as its build.json records
    it (``res``, BuildConfig's); None for shards without that record (made by hand) or one that does not read
    (which the dataset checks, ``maskgen.verify``, report)."""
    try:
        res = read_json_object(Path(dataset) / fmt.BUILD_INFO).get("res")
    except (OSError, ValueError):
        return None
    return res if isinstance(res, int) and not isinstance(res, bool) else None


def error_cause(exc: BaseException) -> str:
    """What went wrong in a read, in a few words: an ``OSError``'s strerror, else the message's first line
    without what webdataset appends to it (" @ <stream>" and the URL)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = (str(exc.args[0]) if exc.args else "").split(" @ ")[0].strip().splitlines()
    return (lines[0].rstrip(":") if lines else "") or type(exc).__name__


def member_names(shard: str | Path) -> list[str]:
    """The names of one shard's files in order, from the tar headers only (no member is read); ``BadShard``
    when it does not read."""
    try:
        with tarfile.open(shard) as tar:
            return [member.name for member in tar if member.isreg()]  # what WebDataset reads
    except (OSError, tarfile.TarError) as exc:
        raise BadShard(f"shard {shard} does not read: {error_cause(exc)}") from exc


_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext: key, then member suffix


def sample_keys(names: Iterable[str]) -> list[str]:
    """The keys of the samples that members of these names form, in order: WebDataset's grouping (a sample
    is a run of members whose names agree up to the first dot of the file name; a name without one is
    not read)."""
    keys = (match[1] for match in map(_MEMBER.match, names) if match)
    return [key for key, _ in itertools.groupby(keys)]


def sample_count(names: Iterable[str]) -> int:
    """Samples that members of these names hold: one per masked image."""
    suffix = "." + fmt.MASKED
    return sum(name.endswith(suffix) for name in names)


def count_samples(shards: Iterable[str]) -> int:
    """Samples in the shards, from the tar headers only (no member is read)."""
    return sum(sample_count(member_names(shard)) for shard in shards)


def raw_samples(shards: Iterable[str]) -> Iterator[RawSample]:
    """The raw samples of the given shards in order (no shuffling, no decoding); ``BadShard`` names a
    shard that does not read to its end."""
    import webdataset as wds  # imports torch: only where shards are read

    for shard in shards:
        try:
            yield from wds.tarfile_samples(iter([{"url": str(shard)}]))
        except (OSError, tarfile.TarError) as exc:
            raise BadShard(f"shard {shard} does not read: {error_cause(exc)}") from exc


def iter_raw_samples(dataset: str | Path, split: str | None = None) -> Iterator[RawSample]:
    """Raw samples of a dataset directory (one split, or all in ``fmt.SPLITS`` order) in shard order."""
    splits = [split] if split else list(fmt.SPLITS)
    shards = [shard for s in splits for shard in list_shards(dataset, s)]
    if not shards:
        raise FileNotFoundError(f"no shards in {dataset}" + (f" for split {split}" if split else ""))
    yield from raw_samples(shards)


def _where(raw: RawSample) -> str:
    return f"sample {raw.get('__key__')!r} in {raw.get('__url__')}"


def decode_image(raw: RawSample, member: str) -> np.ndarray:
    """One image member: RGB for the faces, single channel for the map."""
    try:
        data = np.frombuffer(raw[member], np.uint8)
        if member == fmt.MAP:
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        else:
            image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    except KeyError as exc:
        raise BadSample(f"bad {_where(raw)}: no {member} member") from exc
    except cv2.error as exc:
        raise BadSample(f"bad {_where(raw)}: {member} does not decode") from exc
    if image is None:
        raise BadSample(f"bad {_where(raw)}: {member} does not decode")
    return image


def decode_meta(raw: RawSample) -> dict[str, Any]:
    if fmt.META not in raw:
        return {}
    try:
        return json.loads(raw[fmt.META])
    except ValueError as exc:
        raise BadSample(f"bad {_where(raw)}: {fmt.META} is not JSON") from exc


def decode(raw: RawSample) -> Sample:
    return Sample(key=raw["__key__"], masked=decode_image(raw, fmt.MASKED), unmasked=decode_image(raw, fmt.UNMASKED),
                  map=decode_image(raw, fmt.MAP), meta=decode_meta(raw))

"""Checking a built dataset against its records: ``maskgen verify`` and the quick check before training.

The records of a finished dataset are in ``stats.json``: ``shards`` (the SHA-256 of each shard) and
``shard_sizes`` (its size in bytes), which ``combine`` copies from the record the build wrote with each
shard (``.work/{shard}.json``, see ``maskgen.build``); it also keeps a copy of ``build.json`` (``build``)
and the manifest's SHA-256 (``manifest_sha256``). ``check_shards`` checks that the records agree and
compares the files with them: the set of shards, sizes (hashes on request) and, from the tar headers, each
shard's keys against the manifest's; ``verify`` also reads every sample (``maskgen.reader``) and checks it
against ``maskgen.format`` and the manifest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd

from . import format as fmt
from .build_record import parts_problem, read_part_records
from .files import read_json_object, sha256_of
from .reader import BadShard, error_cause, member_names, sample_keys

MISSING = "missing"
NOT_REGULAR = "not a regular file"


def record_mismatch(path: Path, size: int | None, sha256: str | None) -> str | None:
    """How the file differs from its record (None: it matches); a None size or hash is not compared."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return MISSING
    if not stat.S_ISREG(status.st_mode):  # a FIFO or a device would block or never end the reads below
        return NOT_REGULAR
    actual = status.st_size
    if size is not None and actual != size:
        return f"{actual} bytes, recorded {size}"
    if sha256 is not None and sha256_of(path) != sha256:
        return "SHA-256 differs from the record"
    return None


UNFINISHED = "missing (the build or combine did not finish)"
DIGEST_COLUMNS = ("key", "shard", "split", "source", "mask_type", "coverage")  # what manifest_sha256 covers


class RecordError(ValueError):
    """A record of the dataset (the manifest) that does not read; the message names the file."""


def manifest_digest(manifest: pd.DataFrame) -> str:
    """``stats.json``'s ``manifest_sha256``: the SHA-256 of the manifest's identifying columns as CSV."""
    return hashlib.sha256(manifest[list(DIGEST_COLUMNS)].to_csv(index=False).encode()).hexdigest()


def read_manifest(dataset: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The dataset's manifest (those columns); ``RecordError`` naming it when it does not read,
    ``FileNotFoundError`` when there is none."""
    path = Path(dataset) / fmt.MANIFEST
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as err:  # pyarrow's errors share no base class
        raise RecordError(f"{path}: does not read ({error_cause(err)})") from err


def keys_by_shard(manifest: pd.DataFrame) -> dict[str, list[str]]:
    """The keys the manifest lists for each shard (by file name)."""
    return {str(shard): list(group["key"]) for shard, group in manifest.groupby("shard", sort=False)}


def keys_problem(path: str | Path, keys: list[str], listed: list[str]) -> str | None:
    """How the keys of a shard's samples differ from those the manifest lists for it; None when they agree."""
    if sorted(keys) == sorted(listed):
        return None
    extra, absent = sorted(set(keys) - set(listed)), sorted(set(listed) - set(keys))
    repeated = len(keys) - len(set(keys))
    if not extra and not repeated:
        return (f"{path}: {len(keys)} samples, {fmt.MANIFEST} lists {len(listed)}: the shard is incomplete "
                "(maskgen build rebuilds it)")
    return (f"{path}: keys differ from the manifest's: {len(absent)} missing"
            + (f" (e.g. {absent[0]})" if absent else "")
            + f", {len(extra)} not in it" + (f" (e.g. {extra[0]})" if extra else "")
            + (f", {repeated} repeated" if repeated else ""))


def first_problem(problems: list[str], dataset: str | Path) -> str:
    """One line for a list of problems: the first, and how many more (``maskgen verify`` lists them all)."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more; see maskgen verify {dataset})" if more else "")


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        return read_json_object(path)
    except FileNotFoundError:
        problems.append(f"{path}: {UNFINISHED}")
    except OSError as err:
        problems.append(f"{path}: does not read ({err.strerror or err})")
    except ValueError as err:
        problems.append(str(err))
    return None


@dataclass
class _Records:
    info: dict  # build.json
    digests: dict[str, str]  # stats.json's record of each shard
    sizes: dict[str, int]  # empty for a dataset made before sizes were recorded: the hash says it
    keys_of: dict[str, list[str]]  # the manifest's keys by shard


def _records(dataset: Path) -> tuple[_Records | None, list[str]]:
    """The records (build.json, stats.json, the manifest), or None and the problems that stop a check: one
    missing or unreadable, or two that disagree (build.json and stats.json's copy of it, the manifest and
    its SHA-256 in stats.json: a record edited after the build)."""
    if not (dataset / fmt.BUILD_INFO).is_file():
        return None, [f"{dataset}: not a maskgen dataset (no {fmt.BUILD_INFO})"]
    problems: list[str] = []
    info = _read_json(dataset / fmt.BUILD_INFO, problems)
    stats = _read_json(dataset / fmt.STATS, problems)
    has_digest = stats is not None and "manifest_sha256" in stats
    manifest = None
    try:
        manifest = read_manifest(dataset, list(DIGEST_COLUMNS) if has_digest else ["key", "shard"])
    except FileNotFoundError:
        problems.append(f"{dataset / fmt.MANIFEST}: {UNFINISHED}")
    except RecordError as err:
        problems.append(str(err))
    if info is None or stats is None or manifest is None:
        return None, problems
    if "build" in stats and stats["build"] != info:
        recorded = stats["build"] if isinstance(stats["build"], dict) else {}
        differs = sorted(k for k in set(info) | set(recorded) if info.get(k) != recorded.get(k))
        problems.append(f"{dataset / fmt.BUILD_INFO}: differs from the build recorded in {fmt.STATS} "
                        f"(in: {', '.join(differs)})")
    records, unread = read_part_records(dataset / fmt.WORK_DIR)
    disagreement = None if problems else parts_problem(info, records)  # (build.json edited: said above)
    problems += unread
    if disagreement:
        problems.append(f"{dataset}: its parts were built with other arguments: {disagreement}")
    if has_digest and manifest_digest(manifest) != stats["manifest_sha256"]:
        problems.append(f"{dataset / fmt.MANIFEST}: differs from its record (manifest_sha256 in {fmt.STATS})")
    if problems:
        return None, problems
    return _Records(info, stats.get("shards", {}), stats.get("shard_sizes") or {}, keys_by_shard(manifest)), []


def _unrecorded(dataset: Path, records: _Records) -> list[str]:
    """Shards the manifest or the folder has that the records do not."""
    not_recorded = sorted(set(records.keys_of) - set(records.digests))
    return ([f"{dataset / name}: in the manifest but not in {fmt.STATS}" for name in not_recorded]
            + [f"{p}: a shard that is not in {fmt.STATS}" for p in sorted(dataset.glob("*.tar"))
               if p.name not in records.digests])


def check_shards(dataset: str | Path, *, full_hash: bool = False, splits: Iterable[str] = fmt.SPLITS) -> list[str]:
    """Problems of a dataset made by ``maskgen build`` as one-line strings (none: it is as recorded).

    Cheap (no sample is read; what training, evaluation, ``stats`` and ``preview`` check first): the
    records agree with each other, the shards in the folder are the recorded ones, each with its size in
    ``shard_sizes`` (and, with ``full_hash``, its SHA-256 in ``shards``), and the shards of ``splits`` hold
    the samples the manifest lists for them (keys from the tar headers). A dataset made before sizes were
    recorded has no ``shard_sizes``: then only presence (and the hash when asked) is checked.
    """
    dataset = Path(dataset)
    records, problems = _records(dataset)
    if records is None:
        return problems
    problems = _unrecorded(dataset, records)
    globs = [fmt.shard_glob(split) for split in splits]
    for name, digest in sorted(records.digests.items()):
        path = dataset / name
        mismatch = record_mismatch(path, records.sizes.get(name), digest if full_hash else None)
        if mismatch:
            problems.append(f"{path}: {mismatch}")
        elif any(fnmatch(name, pattern) for pattern in globs):
            try:
                problem = keys_problem(path, sample_keys(member_names(path)), records.keys_of.get(name, []))
            except BadShard as err:
                problem = str(err)
            if problem:
                problems.append(problem)
    return problems


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0  # read and checked (0 with quick)


def verify(dataset: str | Path, *, quick: bool = False) -> Report:
    """The records (as ``check_shards``), every shard against them (size, SHA-256) and, unless ``quick``,
    every sample against the format and the manifest: all members, images that decode at build.json's res,
    a single-channel 0/255 map, the shard's keys equal to the manifest's."""
    dataset = Path(dataset)
    records, problems = _records(dataset)
    if records is None:
        return Report(problems)

    def check(name: str) -> tuple[list[str], int]:
        path = dataset / name
        mismatch = record_mismatch(path, records.sizes.get(name), records.digests[name])
        found = [f"{path}: {mismatch}"] if mismatch else []
        if quick or mismatch in (MISSING, NOT_REGULAR):
            return found, 0
        return _check_samples(path, records.info["res"], records.keys_of.get(name, []), found)

    report = Report(_unrecorded(dataset, records), shards=len(records.digests))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # hashing and decoding release the GIL
        for found, n in pool.map(check, sorted(records.digests)):
            report.problems += found
            report.samples += n
    return report


def _check_samples(path: Path, res: int, manifest_keys: list[str], problems: list[str]) -> tuple[list[str], int]:
    """Every sample of one shard against the format; its keys against the manifest's."""
    import cv2
    import numpy as np

    from .reader import raw_samples

    keys = []
    try:
        for raw in raw_samples([str(path)]):
            key = raw["__key__"]
            keys.append(key)
            where = f"{path}: {key}"
            missing = [m for m in fmt.SAMPLE_MEMBERS if m not in raw]
            problems += [f"{where}: no {m} member" for m in missing]
            for member, shape in ((fmt.MASKED, (res, res, 3)), (fmt.UNMASKED, (res, res, 3)), (fmt.MAP, (res, res))):
                if member in missing:
                    continue
                image = cv2.imdecode(np.frombuffer(raw[member], np.uint8), cv2.IMREAD_UNCHANGED)
                if image is None:
                    problems.append(f"{where}: {member} does not decode")
                elif image.shape != shape or image.dtype != np.uint8:
                    problems.append(f"{where}: {member} is {'x'.join(map(str, image.shape))} {image.dtype}, "
                                    f"expected {'x'.join(map(str, shape))} uint8")
                elif member == fmt.MAP and np.count_nonzero((image != 0) & (image != 255)):
                    problems.append(f"{where}: {member} has values other than 0 and 255")
            if fmt.META not in missing:
                try:
                    meta = json.loads(raw[fmt.META])
                    if meta.get("key") != key:
                        problems.append(f"{where}: {fmt.META} names key {meta.get('key')!r}")
                except (ValueError, AttributeError):
                    problems.append(f"{where}: {fmt.META} is not a JSON object")
    except BadShard as err:
        problems.append(str(err))
    mismatch = keys_problem(path, keys, manifest_keys)
    return problems + ([mismatch] if mismatch else []), len(keys)

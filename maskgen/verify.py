"""Checking a built dataset against its records: ``maskgen verify`` and the quick check before training.

The records of a finished dataset are in ``stats.json``: ``shards`` (the SHA-256 of each shard) and
``shard_sizes`` (its size in bytes), which ``combine`` copies from the record the build wrote with each
shard (``.work/{shard}.json``, see ``maskgen.builder``). ``check_shards`` compares the files with them
(sizes, and hashes on request); ``verify`` also reads every sample (``maskgen.reader``) and checks it
against ``maskgen.format`` and the manifest.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import format as fmt
from .files import sha256_of


def record_mismatch(path: Path, size: int | None, sha256: str | None) -> str | None:
    """How the file differs from its record (None: it matches); a None size or hash is not compared."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size is not None and actual != size:
        return f"{actual} bytes, recorded {size}"
    if sha256 is not None and sha256_of(path) != sha256:
        return "SHA-256 differs from the record"
    return None


UNFINISHED = "missing (the build or combine did not finish)"


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        problems.append(f"{path}: {UNFINISHED}")
    except (OSError, ValueError) as err:
        problems.append(f"{path}: does not read ({getattr(err, 'strerror', None) or err})")
    return None


def _records(dataset: Path) -> tuple[dict | None, dict | None, list[str]]:
    """(build.json, stats.json, problems): both, and the manifest, are needed to check anything."""
    if not (dataset / fmt.BUILD_INFO).is_file():
        return None, None, [f"{dataset}: not a maskgen dataset (no {fmt.BUILD_INFO})"]
    problems: list[str] = []
    info = _read_json(dataset / fmt.BUILD_INFO, problems)
    stats = _read_json(dataset / fmt.STATS, problems)
    if not (dataset / fmt.MANIFEST).is_file():
        problems.append(f"{dataset / fmt.MANIFEST}: {UNFINISHED}")
    return info, stats, problems


def check_shards(dataset: str | Path, *, full_hash: bool = False) -> list[str]:
    """Problems of the dataset's shards as one-line strings (none: every shard is as recorded).

    Needs ``build.json``, ``manifest.parquet`` and ``stats.json``, and reads the records in ``stats.json``:
    every shard in ``shards`` must exist with its size in ``shard_sizes`` (cheap: no byte is read) and,
    with ``full_hash``, its SHA-256 in ``shards``. A dataset made before sizes were recorded has no
    ``shard_sizes``: then only presence (and the hash when asked) is checked.
    """
    dataset = Path(dataset)
    _, stats, problems = _records(dataset)
    if problems:
        return problems
    sizes = stats.get("shard_sizes") or {}
    for name, digest in sorted(stats.get("shards", {}).items()):
        mismatch = record_mismatch(dataset / name, sizes.get(name), digest if full_hash else None)
        if mismatch:
            problems.append(f"{dataset / name}: {mismatch}")
    return problems


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0  # read and checked (0 with quick)


def verify(dataset: str | Path, *, quick: bool = False) -> Report:
    """Every shard against the records (size, SHA-256) and, unless ``quick``, every sample against the
    format and the manifest: all members, images that decode at build.json's res, a single-channel
    0/255 map, the shard's keys equal to the manifest's; no shard that is not in the records."""
    dataset = Path(dataset)
    info, stats, problems = _records(dataset)
    if problems:
        return Report(problems)
    digests, sizes = stats.get("shards", {}), stats.get("shard_sizes") or {}  # no sizes (older): the hash says it
    keys_of: dict[str, list[str]] = {}
    if not quick:
        try:
            import pandas as pd

            manifest = pd.read_parquet(dataset / fmt.MANIFEST, columns=["key", "shard"])
        except (OSError, ValueError) as err:
            return Report([*problems, f"{dataset / fmt.MANIFEST}: does not read ({getattr(err, 'strerror', None) or err})"])
        keys_of = {shard: sorted(group["key"]) for shard, group in manifest.groupby("shard")}
        problems += [f"{dataset / name}: in the manifest but not in {fmt.STATS}" for name in sorted(set(keys_of) - set(digests))]
    problems += [f"{p}: a shard that is not in {fmt.STATS}" for p in sorted(dataset.glob("*.tar")) if p.name not in digests]

    def check(name: str) -> tuple[list[str], int]:
        path = dataset / name
        mismatch = record_mismatch(path, sizes.get(name), digests[name])
        found = [f"{path}: {mismatch}"] if mismatch else []
        if quick or mismatch == "missing":
            return found, 0
        return _check_samples(path, info["res"], keys_of.get(name, []), found)

    report = Report(problems, shards=len(digests))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # hashing and decoding release the GIL
        for found, n in pool.map(check, sorted(digests)):
            report.problems += found
            report.samples += n
    return report


def _check_samples(path: Path, res: int, manifest_keys: list[str], problems: list[str]) -> tuple[list[str], int]:
    """Every sample of one shard against the format; its keys against the manifest's."""
    import cv2
    import numpy as np

    from .reader import BadShard, raw_samples

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
    if sorted(keys) != manifest_keys:
        extra, absent = sorted(set(keys) - set(manifest_keys)), sorted(set(manifest_keys) - set(keys))
        repeated = len(keys) - len(set(keys))
        problems.append(f"{path}: keys differ from the manifest's: {len(absent)} missing"
                        + (f" (e.g. {absent[0]})" if absent else "") + f", {len(extra)} not in it"
                        + (f" (e.g. {extra[0]})" if extra else "") + (f", {repeated} repeated" if repeated else ""))
    return problems, len(keys)

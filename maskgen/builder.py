"""Build a dataset: source -> landmarks -> align -> mask -> compose -> shard.

Two phases, each parallel over joblib workers and each resumable:

1. landmarks: every source image of this part is read and its 68 landmarks found (or taken from
   a CelebA 5-point row); results are cached per chunk under ``OUT/.work``.
2. compose: the requested number of pairs is spread over the usable faces of each split, the
   samples are grouped into shards, and each missing shard is composed and written atomically.

Workers return encoded samples in a fixed order and only this process writes files, so the shards
are byte-identical whatever the worker count. A dataset can be built in parts on several machines
(``part=(k, n)``): part k takes every n-th source, writes shards named ``{split}-p{k}-NNNNNN.tar``,
and ``combine`` merges the parts' manifests once all are present.

Each finished shard has a record (``.work/{shard}.json``: its planned keys, manifest rows, failures and
the tar's size and SHA-256), written atomically before the tar is renamed into place; a rerun reuses a
shard only when the file matches its record, and rebuilds it otherwise. Parts may build into one
shared folder at once: each holds a lock for its part (``.work/part-K-of-N.lock``), removes only
temporaries that are provably its own leftovers, and ``combine`` runs under a lock of its own.

What a dataset is made of is recorded by content, not by name: build.json holds, besides the arguments,
``source_content`` (each source's name and the SHA-256 of its bytes, as one value) and ``template_digests``
(each pack's masks.cfg and images). Before anything is written, a build into a folder whose build.json differs
is refused in one line naming what differs: other arguments, other images under the same names (another
source's dataset, or an image changed between a kill and the rerun; which ones, from the ``sha256`` recorded
with their landmarks), a pack edited since, or another machine's copies for a part. Refused, not rebuilt in
part: a folder holds one build of one content, and the way on is to restore the files or to build into an
empty folder. A folder that holds dataset files but no build.json is refused too. A pack is compared by its
folder's name (the manifest's generator) and its files, not its path: another machine's copy is the same pack.
The sources are hashed once, in this process (bytes read, none decoded). A worker reads a source's bytes again
(from the page cache), hashes them and decodes them only when they are the hashed ones (``source.read_source``):
a source replaced during the build is a failure ("changed during the build"), not samples or landmarks of the
new image recorded under the old content.

A ``--landmarks`` file is read and checked first, too. Each of its rows carries the ``sha256`` of the image its
landmarks were found on: a row of another image under the same name is not used (that face is found again,
logged and counted in ``BuildResult.landmarks_mismatched``), and a file that matches no image is refused.
A build.json or landmarks file of an older maskgen, which recorded no content, is still used, by file name,
with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import numbers
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from . import format as fmt
from . import workers
from .align import DEFAULT_FACE_SCALE, SUPPORTED_RES
from .compose import MaskOptions
from .files import (
    TMP_MARK, Temporary, clean_temporaries, create_exclusive, exclusive_lock, json_bytes, read_json_object,
    temporary_path, write_csv_atomic, write_json_atomic, write_parquet_atomic,
)
from .shard import ShardWriter
from .source import SourceImage, SourceListing, content_digest, discover, source_key
from .splits import DEFAULT_FRACTIONS, assign_splits, fractions_problem
from .templates import pack_digest
from .verify import manifest_digest, record_mismatch

log = logging.getLogger(__name__)

LANDMARK_CHUNK = 128  # sources per cached landmark result
# Sources hashed at once: each read waits on the disk when the cache is cold (a first build, a network file
# system); a few threads overlap those waits (hashlib and reads release the GIL).
HASH_THREADS = 8
TASK_SIZE = 16  # samples per worker task: small enough to balance, large enough to amortise IPC
FACE_SCALE_RANGE = (0.25, 1.0)  # 1: the tight 5-point crop (ArcFace's), which already cuts off the chin
BACKENDS = ("loky", "dask")
JPEG_QUALITY_RANGE = (1, 100)  # OpenCV's IMWRITE_JPEG_QUALITY
# Pairs per source image at most (--pairs): each pair of a face is another draw of mask, wear and look, and
# the planned samples are held in memory, so a slip of the finger (--pairs 1000000000) is refused up front.
MAX_PAIRS_PER_SOURCE = 100
COMBINE_LOCK = "combine.lock"  # in .work: combine runs once at a time, whichever part finishes it
COMBINED = (fmt.MANIFEST, fmt.FAILURES, fmt.LANDMARKS, fmt.STATS)  # what combine writes
UNRECORDED = "no recorded size and SHA-256"  # a shard record written before records had them
# What build.json records of the inputs' content (see BuildConfig.identity); one written before it lacks them.
CONTENT_KEYS = ("source_content", "template_digests")
LANDMARK_COLUMNS = ("source", "ok", "reason", "method", "n_faces", "points")  # with sha256, in landmarks.parquet
LANDMARK_NEEDED = ("source", "method", "n_faces", "points")  # what a --landmarks file must have
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    face_scale: float = DEFAULT_FACE_SCALE
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
                               dict(mask.wear_weights), mask.template_share if mask.templates else None)
        except (ValueError, FileNotFoundError) as err:
            raise BuildError(str(err)) from None

    def identity(self, fingerprint: str, content: str) -> dict:
        """What the data depends on: a rerun must match this to resume into the same folder. ``fingerprint``:
        the sources' names; ``content``: their bytes (``_content_fingerprint``); ``template_digests``: the
        packs' files, in the order of ``mask.templates``."""
        identity = {"source_fingerprint": fingerprint, "source_content": content,
                    "template_digests": [pack_digest(pack) for pack in self.mask.templates],
                    "res": self.res, "pairs": self.pairs, "seed": self.seed, "shard_size": self.shard_size,
                    "mask": asdict(self.mask), "split": list(self.split), "jpeg_quality": self.jpeg_quality,
                    "face_scale": self.face_scale, "parts": self.part[1], "format_version": 1}
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
    return None if isinstance(value, numbers.Real) and low <= value <= high else \
        f"must be in {low:g}..{high:g}, the face's size in the crop (default {DEFAULT_FACE_SCALE:g}; got {value})"


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


@dataclass
class BuildResult:
    out: Path
    samples: int
    failures: int
    shards_written: int  # including the rebuilt ones
    shards_reused: int
    complete: bool  # all parts present and the dataset's manifest written
    shards_rebuilt: int = 0  # finished before, but the file no longer matched its record
    landmarks_mismatched: int = 0  # --landmarks rows of an image of another content than the source's: found again


def _manifest_row(meta: dict, shard: str) -> dict:
    row = {c: meta.get(c) for c in fmt.MANIFEST_COLUMNS}
    row["shard"] = shard
    return row


# --- planning --------------------------------------------------------------------------------------

def _fingerprint(images: list[SourceImage]) -> str:
    h = hashlib.sha256()
    for im in images:
        h.update(im.rel.encode() + b"\0")
    return f"{len(images)}:{h.hexdigest()[:16]}"


def _source_digests(images: list[SourceImage]) -> dict[str, str | None]:
    """Each source's ``content_digest`` (its bytes read once, none decoded), by ``rel``."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return dict(zip([im.rel for im in images], pool.map(content_digest, [im.path for im in images])))


def _content_fingerprint(images: list[SourceImage], digests: dict[str, str | None]) -> str:
    """The sources' names and bytes (``digests``: each one's ``content_digest``), as one short value."""
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.rel}\0{digests[im.rel] or '-'}\n".encode())
    return f"{len(images)}:{h.hexdigest()[:16]}"


def _unique_keys(images: list[SourceImage]) -> dict[str, str]:
    """Source key stems, unique: a stem shared by several paths (they differ only in characters the
    sanitiser drops: unicode, spaces, punctuation) gets a hash of the path, longer when even that clashes."""
    stems = {im.rel: source_key(im.rel) for im in images}
    shared = Counter(stems.values())
    keys = {rel: stem if shared[stem] == 1 else f"{stem}_{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            for rel, stem in stems.items()}
    for length in (16, 40):
        taken = Counter(keys.values())
        clashing = [rel for rel, key in keys.items() if taken[key] > 1]
        if not clashing:
            break
        for rel in clashing:
            keys[rel] = f"{stems[rel]}_{hashlib.sha1(rel.encode()).hexdigest()[:length]}"
    if len(set(keys.values())) != len(keys):
        raise BuildError("could not give every source a unique key; rename the files whose names end in a hash")
    return keys


def _quotas(images: list[SourceImage], pairs: int | None, seed: int) -> dict[str, int] | None:
    """Pairs per source over the whole dataset (all parts), before knowing which faces are usable.

    None when no pair count is asked for: then every usable face gets one pair.
    """
    n = len(images)
    if pairs is None:
        return None
    base, extra = divmod(pairs, n)
    order = np.random.default_rng(seed).permutation(n)
    quota = {im.rel: base for im in images}
    for i in order[:extra]:
        quota[images[i].rel] += 1
    return quota


def _spread(total: int, usable: list[str], seed: int, salt: str) -> dict[str, int]:
    """``total`` pairs over the usable faces: as even as possible, extras to a seeded subset."""
    if not usable or total <= 0:
        return {}
    base, extra = divmod(total, len(usable))
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(int(hashlib.sha1(salt.encode()).hexdigest()[:8], 16),)))
    order = rng.permutation(len(usable))
    counts = {rel: base for rel in usable}
    for i in order[:extra]:
        counts[usable[i]] += 1
    return {rel: c for rel, c in counts.items() if c > 0}


def _parallel(config: BuildConfig, n_tasks: int) -> Parallel:
    n_jobs = config.workers if config.workers != 0 else 1
    if n_tasks <= 1:
        n_jobs = 1
    return Parallel(n_jobs=n_jobs, return_as="generator")  # the backend comes from _backend_context


def _backend_context(config: BuildConfig):
    """joblib's Dask backend for a cluster; a no-op context otherwise."""
    import contextlib

    if config.backend != "dask":
        return contextlib.nullcontext()
    try:
        from dask.distributed import Client
    except ImportError:
        raise BuildError("--backend dask needs dask[distributed]: pip install 'dask[distributed]'") from None
    if not config.scheduler:
        raise BuildError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    from joblib import parallel_config

    stack = contextlib.ExitStack()
    client = Client(config.scheduler)
    stack.callback(client.close)
    stack.enter_context(parallel_config(backend="dask"))
    return stack


def _part_tag(part: tuple[int, int]) -> str:
    return f"part-{part[0]:03d}-of-{part[1]:03d}"


PART_FILES = {"failures": "csv", "landmarks": "parquet", "manifest": "parquet"}  # what each part leaves for combine


def _part_file(work: Path, tag: str, what: str) -> Path:
    return work / f"{tag}-{what}.{PART_FILES[what]}"


def _part_owns(name: str, part: tuple[int, int]) -> bool:
    """Whether the file ``name`` (in OUT or OUT/.work) is written by this part alone: its tagged files,
    its shards and their records."""
    k, n = part
    shard = re.fullmatch(r"([a-z]+)-(?:p\d+-)?(\d+)\.tar(?:\.json)?", name)
    return _part_tag(part) in name or bool(
        shard and name.removesuffix(".json") == fmt.shard_name(shard[1], int(shard[2]), None if n == 1 else k))


# --- the build ---------------------------------------------------------------------------------------

def _prepare_out(config: BuildConfig, identity: dict, digests: dict[str, str | None]) -> tuple[Path, Path]:
    out = Path(config.out)
    work = out / fmt.WORK_DIR
    info_path = out / fmt.BUILD_INFO
    # Read-only checks first: a folder that holds another dataset is refused before anything is written there.
    recorded = info_path.is_file()
    if recorded:
        _check_same_build(out, identity, digests)
    else:
        found = _dataset_files(out)
        if found and not info_path.exists():  # (build.json is written before any of them)
            raise BuildError(f"{out} holds files of a dataset but no {fmt.BUILD_INFO} (e.g. {found[0]}): "
                             "choose an empty folder or delete it")
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(work / "write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise BuildError(f"cannot write to --out {out}: {err.strerror or err}") from None
    # Created whole or not at all, by the first of several parts starting at once; the others compare.
    if not recorded and not create_exclusive(info_path, json_bytes(identity, default=str)):
        _check_same_build(out, identity, digests)
    return out, work


def _check_same_build(out: Path, identity: dict, digests: dict[str, str | None]) -> None:
    """Refuse (one line: what differs, what to do) unless ``out``'s build.json is ``identity``: the same
    arguments, source images (names and bytes) and template packs (their files). A build.json of an older
    maskgen, which recorded no content, is accepted when the rest agrees, with a warning."""
    try:
        previous = read_json_object(out / fmt.BUILD_INFO)
    except ValueError as err:  # names the file
        raise BuildError(f"{err}: choose an empty folder or delete {out}") from None
    if previous == identity:
        return
    recorded, wanted = _options_spread(previous), _options_spread(identity)
    packs_by_content = all(isinstance(info.get("template_digests"), list) for info in (previous, identity))
    if packs_by_content:
        # A pack is its files and its folder's name (the manifest's generator column), not where it lies: the
        # same pack at another path (another machine's copy) is the same build.
        for spread in (recorded, wanted):
            spread["mask.templates"] = [Path(str(pack)).name for pack in spread.get("mask.templates") or []]
    differs = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if not differs:
        return
    if set(differs) <= set(CONTENT_KEYS) and not set(CONTENT_KEYS) & set(previous):
        log.warning("%s was built by an older maskgen, which recorded no content of the sources and template packs: "
                    "resuming it by file names (delete it to rebuild with them recorded)", out)
        return
    how = "choose an empty folder or delete it"
    if differs == ["source_content"]:
        raise BuildError(f"{out} was built from other images under the same names ({_changed_sources(out, digests)}): "
                         f"restore them, or {how}")
    if sorted(differs) == ["source_content", "source_fingerprint"]:
        then = str(previous["source_fingerprint"]).split(":")[0]
        raise BuildError(f"{out} was built from another source (other image names: {then} images then, "
                         f"{len(digests)} now); {how}")
    packs = previous.get("mask", {}).get("templates"), identity["mask"]["templates"]
    if differs == ["template_digests"] and packs[0] == packs[1]:
        changed = [str(pack) for pack, old, new in zip(packs[1], previous["template_digests"],
                                                       identity["template_digests"]) if old != new]
        raise BuildError(f"{out} was built with other files in template pack {', '.join(changed)} (its masks.cfg or "
                         f"images differ from the ones recorded): restore them, or {how}")
    if packs_by_content and {"template_digests", "mask.templates"} & set(differs):
        differs = [k for k in differs if k not in ("template_digests", "mask.templates")]
        differs.append(f"template packs, by folder name (the manifest's generator) and content: {_packs(previous)} "
                       f"then, {_packs(identity)} now")
    raise BuildError(f"{out} holds a dataset built with other arguments (differs in: {', '.join(differs)}); {how}")


def _options_spread(info: dict) -> dict:
    """A build.json identity with its mask options spread out (``mask.light_match``), so that a difference
    names the option, not just "mask"."""
    mask = info.get("mask")
    if not isinstance(mask, dict):
        return dict(info)
    return {**{k: v for k, v in info.items() if k != "mask"}, **{f"mask.{k}": v for k, v in mask.items()}}


def _packs(info: dict) -> str:
    """A build.json's template packs, each as its folder's name and the start of its digest."""
    packs = [Path(str(pack)).name for pack in info["mask"]["templates"]]
    return "[" + ", ".join(f"{name} {digest[:12]}" for name, digest in zip(packs, info["template_digests"])) + "]"


def _changed_sources(out: Path, digests: dict[str, str | None]) -> str:
    """Which sources' bytes differ from those recorded with their landmarks in ``out`` (as far as recorded)."""
    recorded: dict[str, str] = {}
    for path in [*sorted((out / fmt.WORK_DIR).glob("*-landmarks*.parquet")), out / fmt.LANDMARKS]:
        try:
            frame = pd.read_parquet(path, columns=["source", "sha256"])
        except (OSError, ValueError, KeyError):  # absent, damaged, or written before sources were recorded
            continue
        recorded.update((rel, sha) for rel, sha in zip(frame["source"], frame["sha256"]) if isinstance(sha, str))
    changed = sorted(rel for rel, sha in recorded.items() if rel in digests and digests[rel] != sha)
    if not changed:
        return "their bytes differ"
    return f"{len(changed)} of {len(digests)} differ, e.g. {changed[0]}"


def _dataset_files(out: Path) -> list[str]:
    """What of a dataset lies in ``out``: shards, combined outputs, the work records (temporaries and locks,
    which hold no data, aside)."""
    work = out / fmt.WORK_DIR
    found = [p.name for p in sorted(out.iterdir()) if p.suffix == ".tar" or p.name in COMBINED] \
        if out.is_dir() else []
    if work.is_dir():
        found += [f"{fmt.WORK_DIR}/{p.name}" for p in sorted(work.iterdir())
                  if TMP_MARK not in p.name and p.suffix != ".lock"]
    return found


def _io_problem(err: OSError) -> str:
    """One line for a failed read or write of the output (a full disk, no permission): the path and the cause."""
    if err.filename:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, FileNotFoundError) and err.errno is None:  # pyarrow's: the path is the whole message
        return f"{err}: {os.strerror(errno.ENOENT)}"
    return f"the output folder: {err.strerror or err}"


def build(config: BuildConfig) -> BuildResult:
    config.validate()
    try:
        listing = discover(config.source)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise BuildError(str(err)) from None
    if not listing.images:
        raise BuildError(f"no images found in {config.source}")
    most = MAX_PAIRS_PER_SOURCE * len(listing.images)
    if config.pairs is not None and config.pairs > most:
        raise BuildError(f"--pairs: at most {MAX_PAIRS_PER_SOURCE} per source image, {most} for the "
                         f"{len(listing.images)} in {config.source} (got {config.pairs})")
    known = _read_landmarks(config.landmarks)  # before anything is written: a bad file is one line, not a half build
    # build.json records them, so that a rerun or another part over other images (another source under the
    # same names, an image changed since a kill) is refused up front.
    digests = _source_digests(listing.images)
    known, mismatched = _matching_landmarks(config.landmarks, known, digests)
    try:
        identity = config.identity(_fingerprint(listing.images), _content_fingerprint(listing.images, digests))
    except (OSError, ValueError) as err:  # a pack that changed since it was checked
        raise BuildError(str(err)) from None
    out, work = _prepare_out(config, identity, digests)
    k, n_parts = config.part
    try:
        # Held while this part builds: a second process building the same part would share its files.
        with exclusive_lock(work / f"{_part_tag(config.part)}.lock", wait=False) as held:
            if not held:
                which = f"part {k + 1}/{n_parts} of this dataset" if n_parts > 1 else "this dataset"
                raise BuildError(f"{out}: another process is building {which} (it holds "
                                 f"{work / _part_tag(config.part)}.lock)")

            def left_over(tmp: Temporary) -> bool:
                return _part_owns(tmp.destination, config.part) or tmp.stale

            removed = clean_temporaries(out, work, left_over=left_over)
            if removed:
                log.info("removed %d temporary files left by an interrupted build", removed)
            return _build_part(config, listing, out, work, known, digests, mismatched)
    except OSError as err:
        raise BuildError(_io_problem(err)) from None


def _build_part(config: BuildConfig, listing: SourceListing, out: Path, work: Path, known: dict[str, dict],
                digests: dict[str, str | None], mismatched: int) -> BuildResult:
    k, n_parts = config.part
    tag = _part_tag(config.part)
    split_of = assign_splits(listing.images, config.split, config.seed)
    quota = _quotas(listing.images, config.pairs, config.seed)
    keys = _unique_keys(listing.images)
    mine = [im for i, im in enumerate(listing.images) if i % n_parts == k]
    failures: list[dict] = []
    if k == 0:
        failures += [{"source": s, "stage": "source", "reason": r} for s, r in listing.problems]
    for im in mine:
        if im.rel not in split_of:
            failures.append({"source": im.rel, "stage": "split", "reason": "no row in the partition file"})
    mine = [im for im in mine if im.rel in split_of]

    with _backend_context(config):
        landmarks = _phase_landmarks(config, mine, work, tag, known, digests)
        failures += [{"source": r["source"], "stage": "landmarks", "reason": r["reason"]}
                     for r in landmarks if not r["ok"]]
        usable = {r["source"]: r for r in landmarks if r["ok"]}
        shards = _plan_shards(config, mine, usable, split_of, quota, keys, digests)
        compose = _phase_compose(config, shards, out, work)
    failures += compose.failures
    for f in failures:
        log.info("skipped %s (%s): %s", f["source"], f["stage"], f["reason"])
    if not compose.rows and failures:  # nothing to write: an error, not a dataset of no samples
        failed = {f["source"] for f in failures}
        where = f" in part {k + 1}/{n_parts}" if n_parts > 1 else ""
        raise BuildError(f"no usable sample{where}: {len(failed)} of {len(failed | set(usable))} sources failed "
                         f"(e.g. {failures[0]['source']}: {failures[0]['reason']})")

    write_csv_atomic(_part_file(work, tag, "failures"), pd.DataFrame(failures, columns=list(fmt.FAILURE_COLUMNS)))
    # Failures are kept too (ok = False, with the reason): a rebuild with --landmarks skips them
    # without trying the detectors again.
    # With each source's content: a later --landmarks use of them checks that they are of the same image.
    lm = pd.DataFrame([{**{k: r[k] for k in LANDMARK_COLUMNS}, "sha256": digests[r["source"]]} for r in landmarks])
    write_parquet_atomic(_part_file(work, tag, "landmarks"), lm)
    # The manifest last: it marks the part finished (see _combine), so a part finishing at the same
    # moment never combines this one's files before all are written.
    write_parquet_atomic(_part_file(work, tag, "manifest"),
                         pd.DataFrame(compose.rows, columns=list(fmt.MANIFEST_COLUMNS)))
    complete = combine(out, quiet=True) is not None
    return BuildResult(out=out, samples=len(compose.rows), failures=len(failures), shards_written=compose.written,
                       shards_reused=compose.reused, complete=complete, shards_rebuilt=compose.rebuilt,
                       landmarks_mismatched=mismatched)


def _phase_landmarks(config: BuildConfig, images: list[SourceImage], work: Path, tag: str, known: dict[str, dict],
                     digests: dict[str, str | None]) -> list[dict]:
    """Each source's landmark record, from the chunks cached in ``work``, ``known`` (a --landmarks file's rows
    of these images) or the detectors; each chunk cached with its sources' content (``digests``)."""
    chunks = [images[i:i + LANDMARK_CHUNK] for i in range(0, len(images), LANDMARK_CHUNK)]
    paths = [work / f"{tag}-landmarks-{i:05d}.parquet" for i in range(len(chunks))]
    results: list[list[dict] | None] = [None] * len(chunks)

    def cache(i: int) -> None:
        write_parquet_atomic(paths[i], pd.DataFrame([{**r, "sha256": digests[r["source"]]} for r in results[i]]))

    todo = []  # (chunk index, the chunk's sources that need the detector)
    for i, path in enumerate(paths):
        if path.exists():
            results[i] = pd.read_parquet(path).to_dict("records")
            continue
        unknown = [im for im in chunks[i] if im.rel not in known]
        if unknown:
            todo.append((i, unknown))
        else:
            results[i] = [known[im.rel] for im in chunks[i]]
            cache(i)
    if todo:
        jobs = (delayed(workers.landmark_chunk)([(str(im.path), im.rel, digests[im.rel], _as_list(im.landmarks5),
                                                  _as_list(im.prior5)) for im in unknown]) for _, unknown in todo)
        bar = tqdm(total=sum(len(u) for _, u in todo), desc="landmarks", unit="img", disable=not config.progress)
        for (i, unknown), records in zip(todo, _parallel(config, len(todo))(jobs)):
            found = {r["source"]: r for r in records}
            results[i] = [found[im.rel] if im.rel in found else known[im.rel] for im in chunks[i]]
            cache(i)
            bar.update(len(records))
        bar.close()
    return [r for chunk in results for r in chunk]  # type: ignore[union-attr]


def _as_list(points: np.ndarray | None) -> list | None:
    return None if points is None else points.tolist()


def _read_landmarks(path: str | None) -> dict[str, dict]:
    """The rows of a --landmarks file (an earlier build's landmarks.parquet), keyed by source, each with the
    ``sha256`` of the image it was made from (None in a file written before that was recorded). Rows without
    usable points and without a reason are left out (their faces are found again); a file that does not read
    or a row that does not parse is a one-line BuildError."""
    if not path:
        return {}
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BuildError(f"--landmarks {path}: not a readable landmarks.parquet ({first_line})") from None
    missing = set(LANDMARK_NEEDED) - set(frame.columns)
    if missing:
        raise BuildError(f"--landmarks {path} lacks columns {', '.join(sorted(missing))} (give a maskgen build's "
                         f"{fmt.LANDMARKS})")
    known, row_of = {}, {}
    for row, r in enumerate(frame.to_dict("records"), start=1):
        try:
            record = _landmark_record(r)
        except (TypeError, ValueError) as err:
            raise BuildError(f"--landmarks {path}: row {row} ({r['source']!r}) is malformed: {err}") from None
        if record is None:
            continue
        source = record["source"]
        if source in known and not _same_record(known[source], record):  # which one to use is anyone's guess
            raise BuildError(f"--landmarks {path}: rows {row_of[source]} and {row} give {source!r} different "
                             "landmarks; keep one of them")
        known[source], row_of[source] = record, row_of.get(source, row)
    return known


def _same_record(a: dict, b: dict) -> bool:
    """Whether two landmark records say the same (NaN points equal to NaN ones)."""
    if (a["points"] is None) != (b["points"] is None):
        return False
    same_points = a["points"] is None or np.array_equal(a["points"], b["points"], equal_nan=True)
    return same_points and {k: v for k, v in a.items() if k != "points"} == {k: v for k, v in b.items() if k != "points"}


def _landmark_record(r: dict) -> dict | None:
    """A --landmarks row as a landmark record (None: no points and no reason: not usable either way)."""
    source, sha, points = r["source"], r.get("sha256"), r["points"]
    if not isinstance(source, str):
        raise TypeError(f"source is {type(source).__name__}, not text")
    if isinstance(sha, float) and math.isnan(sha):  # a gap: rows of an older maskgen's part, combined with others
        sha = None
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise ValueError(f"sha256 is not a SHA-256 ({str(sha)[:70]!r})")
    if points is not None:
        if not isinstance(points, (list, tuple, np.ndarray)):
            raise TypeError(f"points is {type(points).__name__}, not a list of 136 numbers")
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (136,):
            raise ValueError(f"points has {points.size} values, not 136 (68 x, y pairs)")
    flag = r.get("ok", True)  # a file without the column: every row with points is usable
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"ok is {flag!r}, not true or false")
    usable = points is not None
    ok = bool(flag) and usable
    reason = r.get("reason") or ""
    if not (ok or not usable and reason):
        return None
    return {"source": source, "ok": ok, "reason": "" if ok else str(reason), "method": str(r["method"]),
            "n_faces": int(r["n_faces"]), "points": points.tolist() if ok else None, "sha256": sha}


def _matching_landmarks(path: str | None, known: dict[str, dict],
                        digests: dict[str, str | None]) -> tuple[dict[str, dict], int]:
    """The --landmarks rows that are of this source's images (``digests``: their content), and how many were
    of another image under the same name (those faces are found again). A row without a recorded sha256 (an
    older maskgen's file) is taken by its name, with a warning; a file that matches no image is refused."""
    if not path:
        return {}, 0
    named = {rel: record for rel, record in known.items() if rel in digests}
    other = sorted(rel for rel, record in named.items() if record["sha256"] not in (None, digests[rel]))
    matching = {rel: record for rel, record in named.items() if record["sha256"] in (None, digests[rel])}
    if not matching:
        if other:
            raise BuildError(f"--landmarks {path} was made for other images: its {len(other)} rows named like "
                             f"sources here are of other content (e.g. {other[0]}); give this source's own "
                             f"{fmt.LANDMARKS}, or leave --landmarks out")
        raise BuildError(f"--landmarks {path} has no row for any image of this source ({len(known)} usable rows, "
                         f"none named like one here); give this source's own {fmt.LANDMARKS}, or leave --landmarks out")
    if other:
        log.warning("--landmarks %s: %d rows are of other images than the sources of the same name (their bytes "
                    "differ, e.g. %s): finding those faces again", path, len(other), other[0])
    if any(record["sha256"] is None for record in matching.values()):
        log.warning("--landmarks %s records no image content (an older maskgen wrote it): its rows are matched "
                    "to sources by file name only", path)
    return matching, len(other)


@dataclass
class _Shard:
    name: str
    samples: list[dict]


def _plan_shards(config: BuildConfig, images: list[SourceImage], usable: dict[str, dict], split_of: dict[str, str],
                 quota: dict[str, int] | None, keys: dict[str, str], digests: dict[str, str | None]) -> list[_Shard]:
    k, n_parts = config.part
    shards = []
    for split in fmt.SPLITS:
        in_split = [im for im in images if split_of[im.rel] == split]
        ok = [im.rel for im in in_split if im.rel in usable]
        # Pairs lost to unusable faces go to the usable ones of the same split and part.
        wanted = len(ok) if quota is None else sum(quota[im.rel] for im in in_split)
        counts = _spread(wanted, ok, config.seed, f"{split}:{k}:{n_parts}")
        if wanted and not ok:
            log.warning("split %s: %d pairs requested but no usable face in this part", split, wanted)
        samples = []
        for im in in_split:
            record = usable.get(im.rel)
            for v in range(counts.get(im.rel, 0)):
                samples.append({"key": f"{keys[im.rel]}_{v:02d}", "path": str(im.path), "sha256": digests[im.rel],
                                "source": im.rel,
                                "identity": im.identity, "split": split, "points": record["points"],
                                "method": record["method"]})
        for i in range(0, len(samples), config.shard_size):
            name = fmt.shard_name(split, i // config.shard_size, None if n_parts == 1 else k)
            shards.append(_Shard(name, samples[i:i + config.shard_size]))
    return shards


@dataclass
class _Composed:
    rows: list[dict]
    failures: list[dict]
    written: int
    reused: int
    rebuilt: int


def _reusable(shard: _Shard, out: Path, work: Path) -> tuple[dict | None, str | None]:
    """(the shard's record if the finished shard can be reused, else None; why a finished shard cannot be)."""
    try:
        record = read_json_object(work / f"{shard.name}.json")
    except FileNotFoundError:
        return None, None
    except ValueError:
        return None, "its record does not read"
    if record.get("planned") != [s["key"] for s in shard.samples]:
        return None, None  # planned differently (another build's leftover): not a finished shard of this plan
    if "tar" not in record:
        return None, UNRECORDED
    if record["tar"] is None:  # every sample failed: no tar
        return record, None
    if not (out / shard.name).exists():
        return None, None  # killed between the record and the tar's rename
    mismatch = record_mismatch(out / shard.name, record["tar"]["bytes"], record["tar"]["sha256"])
    return (None, mismatch) if mismatch else (record, None)


def _phase_compose(config: BuildConfig, shards: list[_Shard], out: Path, work: Path) -> _Composed:
    done: dict[str, tuple[list[dict], list[dict]]] = {}  # shard name: (manifest rows, failures)
    pending = []
    reused, rebuilt, unrecorded = 0, 0, 0
    for shard in shards:
        record, problem = _reusable(shard, out, work)
        if record is not None:
            done[shard.name] = record["rows"], record["failures"]
            reused += 1
            continue
        if problem == UNRECORDED:
            unrecorded += 1
        elif problem:
            log.warning("%s does not match its record (%s): rebuilding it", out / shard.name, problem)
            rebuilt += 1
        pending.append(shard)
    if unrecorded:
        log.warning("%s: %d finished shards have %s (an older maskgen built them): rebuilding them",
                    out, unrecorded, UNRECORDED)
    rebuilt += unrecorded
    tasks = [(shard, shard.samples[i:i + TASK_SIZE]) for shard in pending
             for i in range(0, len(shard.samples), TASK_SIZE)]
    jobs = (delayed(workers.compose_task)(specs, config.mask, config.res, config.face_scale, config.seed,
                                   config.jpeg_quality) for _, specs in tasks)
    bar = tqdm(total=sum(len(s.samples) for s in pending), desc="compose", unit="pair", disable=not config.progress)
    writer, shard_rows, shard_failures, seen, written = None, [], [], 0, 0
    try:
        for (shard, specs), results in zip(tasks, _parallel(config, len(tasks))(jobs)):
            if writer is None:
                writer, shard_rows, shard_failures, seen = ShardWriter(out / shard.name), [], [], 0
            for (key, members, info), spec in zip(results, specs):
                if members is None:
                    shard_failures.append({"source": spec["source"], "stage": "compose", "reason": info})
                else:
                    writer.write(key, members)
                    shard_rows.append(_manifest_row(info, shard.name))
            seen += len(specs)
            bar.update(len(specs))
            if seen == len(shard.samples):
                # The record first: a shard counts as done only when both exist and agree, so a kill
                # between the two renames redoes the shard instead of listing samples that are not there.
                # A shard whose every sample failed has no tar, so no record either: a rerun composes it again.
                if writer.count:
                    write_json_atomic(work / f"{shard.name}.json",
                                      {"planned": [s["key"] for s in shard.samples], "rows": shard_rows,
                                       "failures": shard_failures, "tar": writer.finish()}, default=str)
                    writer.commit()
                    written += 1
                else:
                    writer.abort()
                done[shard.name] = shard_rows, shard_failures
                writer = None
    finally:
        if writer is not None:
            writer.abort()
        bar.close()
    # In the plan's order, whichever shards were reused: the part's files are the same after a resume.
    rows = [row for shard in shards for row in done[shard.name][0]]
    failures = [failure for shard in shards for failure in done[shard.name][1]]
    return _Composed(rows, failures, written, reused, rebuilt)


# --- combining parts, summaries -------------------------------------------------------------------------

def combine(out: str | Path, quiet: bool = False) -> dict | None:
    """Merge the parts' results into manifest.parquet, failures.csv, landmarks.parquet, stats.json.

    Returns the stats, or None (with a message unless quiet) while parts are missing. Runs under a lock,
    so parts finishing together combine one after the other; the outputs depend on the parts' files
    only, so a second combine writes the same bytes.
    """
    out = Path(out)
    info_path, work = out / fmt.BUILD_INFO, out / fmt.WORK_DIR
    if not info_path.is_file() or not work.is_dir():
        raise BuildError(f"{out} is not a maskgen build folder (no {fmt.BUILD_INFO} or {fmt.WORK_DIR}/)")
    try:
        info = read_json_object(info_path)
    except ValueError as err:  # names the file
        raise BuildError(str(err)) from None
    except OSError as err:
        raise BuildError(_io_problem(err)) from None
    try:
        with exclusive_lock(work / COMBINE_LOCK):
            # Only the lock's holder writes these: any temporary of them is a killed combine's.
            clean_temporaries(out, left_over=lambda tmp: tmp.destination in COMBINED)
            return _combine(out, work, info, quiet)
    except ValueError as err:
        raise BuildError(f"{out}: {err}") from None
    except OSError as err:
        raise BuildError(_io_problem(err)) from None


def _combine(out: Path, work: Path, info: dict, quiet: bool) -> dict | None:
    n_parts = info.get("parts")
    if not (isinstance(n_parts, int) and n_parts >= 1):
        raise BuildError(f"{out / fmt.BUILD_INFO}: no valid parts count (got {n_parts!r})")
    tags = [_part_tag((k, n_parts)) for k in range(n_parts)]
    # A part is finished when all its files are there (the manifest, written last, says so; the rest is
    # checked too: a part killed by an older maskgen, which wrote the manifest first).
    missing = [t for t in tags if not all(_part_file(work, t, what).exists() for what in PART_FILES)]
    if missing:
        if not quiet:
            log.warning("%s: parts not finished yet: %s", out, ", ".join(missing))
        return None
    manifest = pd.concat([pd.read_parquet(_part_file(work, t, "manifest")) for t in tags], ignore_index=True)
    manifest = manifest.sort_values(["split", "shard", "key"], kind="stable").reset_index(drop=True)
    failures = pd.concat([pd.read_csv(_part_file(work, t, "failures"), dtype=str, keep_default_na=False)
                          for t in tags], ignore_index=True)
    landmarks = pd.concat([pd.read_parquet(_part_file(work, t, "landmarks")) for t in tags], ignore_index=True)
    records = {name: _shard_record(out, work, name) for name in sorted(manifest["shard"].unique())}
    write_parquet_atomic(out / fmt.MANIFEST, manifest)
    write_csv_atomic(out / fmt.FAILURES, failures)
    write_parquet_atomic(out / fmt.LANDMARKS, landmarks)
    stats = summarize(manifest, failures, info, {name: r["sha256"] for name, r in records.items()},
                      {name: r["bytes"] for name, r in records.items()})
    write_json_atomic(out / fmt.STATS, stats, default=str)
    return stats


def _shard_record(out: Path, work: Path, name: str) -> dict:
    """The size and SHA-256 recorded when the shard was written; the file must still have that size."""
    try:
        record = read_json_object(work / f"{name}.json").get("tar")
    except ValueError as err:  # names the file
        raise BuildError(f"{err}: rerun maskgen build with the same arguments to rebuild the shard") from None
    if not record:
        raise BuildError(f"{work / name}.json has {UNRECORDED} (an older maskgen wrote it): rerun maskgen build "
                         "with the same arguments to rebuild and record the shards")
    mismatch = record_mismatch(out / name, record["bytes"], None)
    if mismatch:
        raise BuildError(f"{out / name} does not match its record ({mismatch}): rerun maskgen build with the "
                         "same arguments to rebuild it")
    return record


def summarize(manifest: pd.DataFrame, failures: pd.DataFrame, info: dict, shard_digests: dict[str, str],
              shard_sizes: dict[str, int]) -> dict:
    coverage = manifest["coverage"].astype(float) if len(manifest) else pd.Series(dtype=float)
    quantiles = {f"q{int(q * 100):02d}": round(float(coverage.quantile(q)), 4) for q in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)} if len(coverage) else {}
    sources_ok = int(manifest["source"].nunique()) if len(manifest) else 0
    return {
        "samples": int(len(manifest)),
        "by_split": {k: int(v) for k, v in manifest["split"].value_counts().sort_index().items()},
        "by_mask_type": {k: int(v) for k, v in manifest["mask_type"].value_counts().sort_index().items()},
        "by_variant": {k: int(v) for k, v in manifest["variant"].value_counts().sort_index().items()},
        "by_wear": {k: int(v) for k, v in manifest["wear"].value_counts().sort_index().items()},
        "by_generator": {k: int(v) for k, v in manifest["generator"].value_counts().sort_index().items()},
        "coverage": quantiles,
        "upsampled": int(manifest["upsampled"].astype(bool).sum()) if len(manifest) else 0,
        "sources_used": sources_ok,
        "failures": int(len(failures)),
        "failure_reasons": {k: int(v) for k, v in Counter(_reason_class(r) for r in failures["reason"]).most_common()},
        "failure_rate": round(len(failures) / max(1, len(failures) + sources_ok), 5),
        "build": info,
        "manifest_sha256": manifest_digest(manifest),
        "shards": shard_digests,
        "shard_sizes": shard_sizes,
    }


def _reason_class(reason: str) -> str:
    """Group reasons that differ only in detail ('image too small (30x20 ...)' -> 'image too small')."""
    return reason.split(" (")[0].split(":")[0]

"""``build``: one part of a dataset from start to finish: the checks, the sources' hashes, the output folder,
the part's lock, the landmarks and compose phases, the part's files, and ``combine`` once all parts are in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import format as fmt
from ..build_record import part_record_name
from ..files import (
    Temporary,
    clean_temporaries,
    exclusive_lock,
    write_csv_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ..source import SourceListing, discover
from ..splits import assign_splits
from .combine_parts import combine
from .compose_phase import phase_compose
from .landmark_cache import LANDMARK_COLUMNS, matching_landmarks, phase_landmarks, read_landmarks
from .options import MAX_PAIRS_PER_SOURCE, BuildConfig, BuildError
from .output_folder import io_problem, part_file, part_owns, part_tag, prepare_out
from .parallel import backend_context
from .plan import content_fingerprint, name_fingerprint, plan_shards, quotas, source_digests, unique_keys

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes


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
    known = read_landmarks(config.landmarks)  # before anything is written: a bad file is one line, not a half build
    # build.json records them, so that a rerun or another part over other images (another source under the
    # same names, an image changed since a kill) is refused up front.
    digests = source_digests(listing.images)
    known, mismatched = matching_landmarks(config.landmarks, known, digests)
    try:
        identity = config.identity(name_fingerprint(listing.images), content_fingerprint(listing.images, digests))
    except (OSError, ValueError) as err:  # a pack that changed since it was checked
        raise BuildError(str(err)) from None
    out, work = prepare_out(config, identity, digests)
    k, n_parts = config.part
    try:
        # Held while this part builds: a second process building the same part would share its files.
        with exclusive_lock(work / f"{part_tag(config.part)}.lock", wait=False) as held:
            if not held:
                which = f"part {k + 1}/{n_parts} of this dataset" if n_parts > 1 else "this dataset"
                raise BuildError(f"{out}: another process is building {which} (it holds "
                                 f"{work / part_tag(config.part)}.lock)")

            def left_over(tmp: Temporary) -> bool:
                return part_owns(tmp.destination, config.part) or tmp.stale

            removed = clean_temporaries(out, work, left_over=left_over)
            if removed:
                log.info("removed %d temporary files left by an interrupted build", removed)
            # What this part was built with: combine and verify refuse parts of other builds copied in beside it.
            write_json_atomic(work / part_record_name(part_tag(config.part)), identity, default=str)
            return _build_part(config, listing, out, work, known, digests, mismatched)
    except OSError as err:
        raise BuildError(io_problem(err)) from None


def _build_part(config: BuildConfig, listing: SourceListing, out: Path, work: Path, known: dict[str, dict],
                digests: dict[str, str | None], mismatched: int) -> BuildResult:
    k, n_parts = config.part
    tag = part_tag(config.part)
    split_of = assign_splits(listing.images, config.split, config.seed)
    quota = quotas(listing.images, config.pairs, config.seed)
    keys = unique_keys(listing.images)
    mine = [im for i, im in enumerate(listing.images) if i % n_parts == k]
    failures: list[dict] = []
    if k == 0:
        failures += [{"source": s, "stage": "source", "reason": r} for s, r in listing.problems]
    for im in mine:
        if im.rel not in split_of:
            failures.append({"source": im.rel, "stage": "split", "reason": "no row in the partition file"})
    mine = [im for im in mine if im.rel in split_of]

    with backend_context(config):
        landmarks = phase_landmarks(config, mine, work, tag, known, digests)
        failures += [{"source": r["source"], "stage": "landmarks", "reason": r["reason"]}
                     for r in landmarks if not r["ok"]]
        usable = {r["source"]: r for r in landmarks if r["ok"]}
        shards = plan_shards(config, mine, usable, split_of, quota, keys, digests, listing.images)
        compose = phase_compose(config, shards, out, work)
    failures += compose.failures
    for f in failures:
        log.info("skipped %s (%s): %s", f["source"], f["stage"], f["reason"])
    if not compose.rows and failures:  # nothing to write: an error, not a dataset of no samples
        failed = {f["source"] for f in failures}
        where = f" in part {k + 1}/{n_parts}" if n_parts > 1 else ""
        raise BuildError(f"no usable sample{where}: {len(failed)} of {len(failed | set(usable))} sources failed "
                         f"(e.g. {failures[0]['source']}: {failures[0]['reason']})")

    write_csv_atomic(part_file(work, tag, "failures"), pd.DataFrame(failures, columns=list(fmt.FAILURE_COLUMNS)))
    # Failures are kept too (ok = False, with the reason): a rebuild with --landmarks skips them
    # without trying the detectors again.
    # With each source's content: a later --landmarks use of them checks that they are of the same image.
    lm = pd.DataFrame([{**{k: r[k] for k in LANDMARK_COLUMNS}, "sha256": digests[r["source"]]} for r in landmarks])
    write_parquet_atomic(part_file(work, tag, "landmarks"), lm)
    # The manifest last: it marks the part finished (see combine), so a part finishing at the same
    # moment never combines this one's files before all are written.
    write_parquet_atomic(part_file(work, tag, "manifest"),
                         pd.DataFrame(compose.rows, columns=list(fmt.MANIFEST_COLUMNS)))
    complete = combine(out, quiet=True) is not None
    return BuildResult(out=out, samples=len(compose.rows), failures=len(failures), shards_written=compose.written,
                       shards_reused=compose.reused, complete=complete, shards_rebuilt=compose.rebuilt,
                       landmarks_mismatched=mismatched)


"""Combining a dataset's parts into its manifest, failures, landmarks and stats (``summarize``)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from .. import format as fmt
from ..build_record import parts_problem, read_part_records
from ..files import (
    clean_temporaries,
    exclusive_lock,
    read_json_object,
    write_csv_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ..verify import manifest_digest, record_mismatch
from .compose_phase import UNRECORDED
from .options import BuildError
from .output_folder import COMBINED, PART_FILES, io_problem, part_file, part_tag

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes

COMBINE_LOCK = "combine.lock"  # in .work: combine runs once at a time, whichever part finishes it


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
        raise BuildError(io_problem(err)) from None
    try:
        with exclusive_lock(work / COMBINE_LOCK):
            # Only the lock's holder writes these: any temporary of them is a killed combine's.
            clean_temporaries(out, left_over=lambda tmp: tmp.destination in COMBINED)
            return _combine(out, work, info, quiet)
    except ValueError as err:
        raise BuildError(f"{out}: {err}") from None
    except OSError as err:
        raise BuildError(io_problem(err)) from None


def _combine(out: Path, work: Path, info: dict, quiet: bool) -> dict | None:
    n_parts = info.get("parts")
    if not (isinstance(n_parts, int) and n_parts >= 1):
        raise BuildError(f"{out / fmt.BUILD_INFO}: no valid parts count (got {n_parts!r})")
    tags = [part_tag((k, n_parts)) for k in range(n_parts)]
    # A part is finished when all its files are there (the manifest, written last, says so; the rest is
    # checked too: a part killed by an older maskgen, which wrote the manifest first).
    missing = [t for t in tags if not all(part_file(work, t, what).exists() for what in PART_FILES)]
    if missing:
        if not quiet:
            log.warning("%s: parts not finished yet: %s", out, ", ".join(missing))
        return None
    records, problems = read_part_records(work)
    disagreement = parts_problem(info, records)
    if problems or disagreement:
        raise BuildError(f"{out}: " + (problems[0] if problems else
                                       f"{disagreement}: combine only the parts of one build (maskgen build "
                                       "with the same arguments for every --part)"))
    manifest = pd.concat([pd.read_parquet(part_file(work, t, "manifest")) for t in tags], ignore_index=True)
    manifest = manifest.sort_values(["split", "shard", "key"], kind="stable").reset_index(drop=True)
    failures = pd.concat([pd.read_csv(part_file(work, t, "failures"), dtype=str, keep_default_na=False)
                          for t in tags], ignore_index=True)
    landmarks = pd.concat([pd.read_parquet(part_file(work, t, "landmarks")) for t in tags], ignore_index=True)
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
    quantiles = {f"q{int(q * 100):02d}": round(float(coverage.quantile(q)), 4)
                 for q in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)} if len(coverage) else {}
    sources_ok = int(manifest["source"].nunique()) if len(manifest) else 0
    return {
        "samples": int(len(manifest)),
        "by_split": {k: int(v) for k, v in manifest["split"].value_counts().sort_index().items()},
        "by_mask_type": {k: int(v) for k, v in manifest["mask_type"].value_counts().sort_index().items()},
        "by_variant": {k: int(v) for k, v in manifest["variant"].value_counts().sort_index().items()},
        "by_wear": {k: int(v) for k, v in manifest["wear"].value_counts().sort_index().items()},
        "by_generator": {k: int(v) for k, v in manifest["generator"].value_counts().sort_index().items()},
        **{f"by_{name}": {k: int(v) for k, v in manifest[name].value_counts().sort_index().items()}
           for name in ("print", "occluder") if name in manifest},
        "folds": int((manifest["folds"].astype(int) > 0).sum()) if "folds" in manifest and len(manifest) else 0,
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

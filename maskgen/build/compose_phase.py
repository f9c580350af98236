"""The compose phase: each planned shard reused when its file matches its record, else composed on the
workers and written, with its record (``.work/{shard}.json``), by this process alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from joblib import delayed
from tqdm.auto import tqdm

from .. import format as fmt
from .. import workers
from ..files import read_json_object, write_json_atomic
from ..shard import ShardWriter
from ..verify import record_mismatch
from .options import BuildConfig
from .parallel import parallel
from .plan import Shard

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes

TASK_SIZE = 16  # samples per worker task: small enough to balance, large enough to amortise IPC
UNRECORDED = "no recorded size and SHA-256"  # a shard record written before records had them


def _manifest_row(meta: dict, shard: str) -> dict:
    row = {c: meta.get(c) for c in fmt.MANIFEST_COLUMNS}
    row["shard"] = shard
    return row


@dataclass
class Composed:
    rows: list[dict]
    failures: list[dict]
    written: int
    reused: int
    rebuilt: int


def _reusable(shard: Shard, out: Path, work: Path) -> tuple[dict | None, str | None]:
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


def phase_compose(config: BuildConfig, shards: list[Shard], out: Path, work: Path) -> Composed:
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
        for (shard, specs), results in zip(tasks, parallel(config, len(tasks))(jobs), strict=False):
            if writer is None:
                writer, shard_rows, shard_failures, seen = ShardWriter(out / shard.name), [], [], 0
            for (key, members, info), spec in zip(results, specs, strict=True):
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
    return Composed(rows, failures, written, reused, rebuilt)


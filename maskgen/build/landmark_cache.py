"""The landmarks phase: each source's 68 points, from the chunks cached in ``OUT/.work``, from a
``--landmarks`` file (an earlier build's landmarks.parquet), or from the detectors on the workers.

A ``--landmarks`` file is read and checked before anything is written. Each of its rows carries the ``sha256``
of the image its landmarks were found on: a row of another image under the same name is not used (that face
is found again, logged and counted in ``BuildResult.landmarks_mismatched``), and a file that matches no image
is refused. A landmarks file of an older maskgen, which recorded no content, is still used, by file name,
with a warning.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import delayed
from tqdm.auto import tqdm

from .. import format as fmt
from .. import workers
from ..files import write_parquet_atomic
from ..source import SourceImage
from .options import BuildConfig, BuildError
from .parallel import parallel

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes

LANDMARK_CHUNK = 128  # sources per cached landmark result
LANDMARK_COLUMNS = ("source", "ok", "reason", "method", "n_faces", "points")  # with sha256, in landmarks.parquet
LANDMARK_NEEDED = ("source", "method", "n_faces", "points")  # what a --landmarks file must have
_SHA256 = re.compile(r"[0-9a-f]{64}")


def phase_landmarks(config: BuildConfig, images: list[SourceImage], work: Path, tag: str, known: dict[str, dict],
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
        for (i, _), records in zip(todo, parallel(config, len(todo))(jobs), strict=False):
            found = {r["source"]: r for r in records}
            results[i] = [found[im.rel] if im.rel in found else known[im.rel] for im in chunks[i]]
            cache(i)
            bar.update(len(records))
        bar.close()
    return [r for chunk in results for r in chunk]  # type: ignore[union-attr]


def _as_list(points: np.ndarray | None) -> list | None:
    return None if points is None else points.tolist()


def read_landmarks(path: str | None) -> dict[str, dict]:
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
    return same_points and \
        {k: v for k, v in a.items() if k != "points"} == {k: v for k, v in b.items() if k != "points"}


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


def matching_landmarks(path: str | None, known: dict[str, dict],
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


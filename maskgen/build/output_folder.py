"""The output folder: what each part's files are called, and preparing the folder for a build, refused when
it holds another one.

What a dataset is made of is recorded by content, not by name: build.json holds, besides the arguments,
``source_content`` (each source's name and the SHA-256 of its bytes, as one value) and ``template_digests``
(each pack's masks.cfg and images). Before anything is written, a build into a folder whose build.json differs
is refused in one line naming what differs: other arguments, other images under the same names (another
source's dataset, or an image changed between a kill and the rerun; which ones, from the ``sha256`` recorded
with their landmarks), a pack edited since, or another machine's copies for a part. Refused, not rebuilt in
part: a folder holds one build of one content, and the way on is to restore the files or to build into an
empty folder. A folder that holds dataset files but no build.json is refused too. A pack is compared by its
folder's name (the manifest's generator) and its files, not its path: another machine's copy is the same pack.
A build.json of an older maskgen, which recorded no content, is still used, by file name, with a warning.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path

import pandas as pd

from .. import format as fmt
from ..build_record import differing_options, packs_by_content
from ..files import TMP_MARK, create_exclusive, json_bytes, read_json_object, temporary_path
from .options import CONTENT_KEYS, BuildConfig, BuildError

log = logging.getLogger("maskgen.build")  # one name in the log lines, whichever step writes

COMBINED = (fmt.MANIFEST, fmt.FAILURES, fmt.LANDMARKS, fmt.STATS)  # what combine writes


def part_tag(part: tuple[int, int]) -> str:
    return f"part-{part[0]:03d}-of-{part[1]:03d}"


PART_FILES = {"failures": "csv", "landmarks": "parquet", "manifest": "parquet"}  # what each part leaves for combine


def part_file(work: Path, tag: str, what: str) -> Path:
    return work / f"{tag}-{what}.{PART_FILES[what]}"


def part_owns(name: str, part: tuple[int, int]) -> bool:
    """Whether the file ``name`` (in OUT or OUT/.work) is written by this part alone: its tagged files,
    its shards and their records."""
    k, n = part
    shard = re.fullmatch(r"([a-z]+)-(?:p\d+-)?(\d+)\.tar(?:\.json)?", name)
    return part_tag(part) in name or bool(
        shard and name.removesuffix(".json") == fmt.shard_name(shard[1], int(shard[2]), None if n == 1 else k))


def prepare_out(config: BuildConfig, identity: dict, digests: dict[str, str | None]) -> tuple[Path, Path]:
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
    differs = differing_options(previous, identity)
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
                                                       identity["template_digests"], strict=False) if old != new]
        raise BuildError(f"{out} was built with other files in template pack {', '.join(changed)} (its masks.cfg or "
                         f"images differ from the ones recorded): restore them, or {how}")
    if packs_by_content(previous, identity) and {"template_digests", "mask.templates"} & set(differs):
        differs = [k for k in differs if k not in ("template_digests", "mask.templates")]
        differs.append(f"template packs, by folder name (the manifest's generator) and content: {_packs(previous)} "
                       f"then, {_packs(identity)} now")
    raise BuildError(f"{out} holds a dataset built with other arguments (differs in: {', '.join(differs)}); {how}")


def _packs(info: dict) -> str:
    """A build.json's template packs, each as its folder's name and the start of its digest."""
    packs = [Path(str(pack)).name for pack in info["mask"]["templates"]]
    digests = info["template_digests"]
    return "[" + ", ".join(f"{name} {digest[:12]}" for name, digest in zip(packs, digests, strict=False)) + "]"


def _changed_sources(out: Path, digests: dict[str, str | None]) -> str:
    """Which sources' bytes differ from those recorded with their landmarks in ``out`` (as far as recorded)."""
    recorded: dict[str, str] = {}
    for path in [*sorted((out / fmt.WORK_DIR).glob("*-landmarks*.parquet")), out / fmt.LANDMARKS]:
        try:
            frame = pd.read_parquet(path, columns=["source", "sha256"])
        except (OSError, ValueError, KeyError):  # absent, damaged, or written before sources were recorded
            continue
        recorded.update((rel, sha) for rel, sha in zip(frame["source"], frame["sha256"], strict=True)
                        if isinstance(sha, str))
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


def io_problem(err: OSError) -> str:
    """One line for a failed read or write of the output (a full disk, no permission): the path and the cause."""
    if err.filename:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, FileNotFoundError) and err.errno is None:  # pyarrow's: the path is the whole message
        return f"{err}: {os.strerror(errno.ENOENT)}"
    return f"the output folder: {err.strerror or err}"


"""What makes parts one dataset: each part's copy of the build.json it was built under
(``.work/part-KKK-of-NNN-build.json``), and comparing such records, named as the command line's options.

A dataset built in parts on several machines is put together by copying the parts' files into one folder
(``maskgen combine``). Each part records the arguments and input content it was built with, so that parts
of other builds (another ``--resolution``, ``--seed``, source or pack) are refused by ``combine`` and found
by ``maskgen verify``, rather than merged into a dataset whose build.json describes only some of its shards.
A part of an older maskgen has no record: it is compared with nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import format as fmt
from .files import read_json_object

_PART_RECORD = re.compile(rf"part-(\d+)-of-(\d+)-{re.escape(fmt.BUILD_INFO)}")

# How each recorded value is given on the command line (``maskgen build``), for messages.
OPTION_NAMES = {
    "res": "--resolution", "pairs": "--pairs", "seed": "--seed", "shard_size": "--shard-size", "split": "--split",
    "jpeg_quality": "--jpeg-quality", "face_scale": "--face-scale", "parts": "--part K/",
    "mask.type_weights": "--mask-types", "mask.wear_weights": "--wear", "mask.templates": "--templates",
    "mask.template_share": "--template-share", "mask.light_match": "light_match",
    "mask.print_share": "--print-share", "mask.fold_share": "--fold-share", "mask.occluder_share": "--occluder-share",
    "mask.occluder_weights": "--occluders",
}
# Recorded values that are not options: what a difference in them means.
CONTENT_NAMES = {
    "source_fingerprint": "another source (other image names)",
    "source_content": "other source images (other bytes)",
    "template_digests": "other template pack files",
    "format_version": "another maskgen format version",
}


def part_record_name(tag: str) -> str:
    """The file in ``.work`` where the part ``tag`` (``output_folder.part_tag``) records its build.json."""
    return f"{tag}-{fmt.BUILD_INFO}"


def options_spread(info: dict) -> dict:
    """A build.json identity with its mask options spread out (``mask.light_match``), so that a difference
    names the option, not just "mask"."""
    mask = info.get("mask")
    if not isinstance(mask, dict):
        return dict(info)
    return {**{k: v for k, v in info.items() if k != "mask"}, **{f"mask.{k}": v for k, v in mask.items()}}


def packs_by_content(*infos: dict) -> bool:
    """Whether the records name their template packs by content (``template_digests``), not only by path."""
    return all(isinstance(info.get("template_digests"), list) for info in infos)


def differing_options(first: dict, second: dict) -> list[str]:
    """The keys (``options_spread``'s) in which two build.json identities differ. Packs recorded by content
    are compared by their folder's name (the manifest's generator) and files, not by path: the same pack at
    another path (another machine's copy) is the same build."""
    spreads = [options_spread(first), options_spread(second)]
    if packs_by_content(first, second):
        for spread in spreads:
            spread["mask.templates"] = [Path(str(pack)).name for pack in spread.get("mask.templates") or []]
    a, b = spreads
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _given(key: str, spread: dict) -> str:
    value = spread.get(key)
    if key == "mask.templates" and isinstance(value, list):
        value = [Path(str(pack)).name for pack in value]
    if key == "face_scale" and isinstance(value, list):  # a range, as --face-scale takes it
        value = "-".join(f"{v:g}" for v in value)
    shown = value if isinstance(value, (int, float, str)) else json.dumps(value, separators=(",", ":"))
    name = OPTION_NAMES[key]
    return f"{name}{shown}" if name.endswith("/") else f"{name} {shown}"


def difference_text(first: tuple[str, dict], second: tuple[str, dict]) -> str | None:
    """One phrase for how two labelled records differ (``part 2 was built with --seed 4, part 1 with --seed
    3``), or None when they agree. ``second``'s label is "build.json" or a part's."""
    (label, info), (other_label, other) = first, second
    differs = differing_options(info, other)
    if not differs:
        return None
    options = [k for k in differs if k in OPTION_NAMES]
    if options:
        a, b = options_spread(info), options_spread(other)
        mine = ", ".join(_given(k, a) for k in options)
        theirs = ", ".join(_given(k, b) for k in options)
        verb = "records" if other_label == fmt.BUILD_INFO else "with"
        return f"{label} was built with {mine}, {other_label} {verb} {theirs}"
    what = ", ".join(CONTENT_NAMES.get(k, k) for k in differs)
    return f"{label} was built from {what} than {other_label}"


def read_part_records(work: Path) -> tuple[dict[int, dict], list[str]]:
    """The build.json records of the parts in ``work`` (by 0-based part number) and the problems of those that
    do not read (naming the file)."""
    records, problems = {}, []
    for path in sorted(work.glob(f"part-*-{fmt.BUILD_INFO}")) if work.is_dir() else []:
        match = _PART_RECORD.fullmatch(path.name)
        if not match:
            continue
        try:
            records[int(match[1])] = read_json_object(path)
        except ValueError as err:  # names the file
            problems.append(str(err))
        except OSError as err:
            problems.append(f"{path}: does not read ({err.strerror or err})")
    return records, problems


def parts_problem(info: dict, records: dict[int, dict]) -> str | None:
    """How the parts' records disagree with each other or with the dataset's build.json (``info``), in one
    phrase; None when they agree (or there are none)."""
    labelled: list[tuple[str, Any]] = [(f"part {k + 1}", records[k]) for k in sorted(records)]
    if not labelled:
        return None
    for part in labelled[1:]:
        text = difference_text(part, labelled[0])
        if text:
            return text
    # A build.json of an older maskgen records less (no content): its parts are compared in what it records.
    label, first = labelled[0]
    return difference_text((label, {k: v for k, v in first.items() if k in info}), (fmt.BUILD_INFO, info))

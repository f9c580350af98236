"""Where ``unmask predict`` writes, decided before anything runs, and its limits and defaults.

``plan_outputs`` gives every input its output paths under ``OUT`` (mirroring the input tree, never two
inputs on one name, never into or onto an input). Nothing here needs torch: the command line reads these
names and limits at start-up without loading the networks (``unmask.predict`` does the work).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from maskgen.source import encode_name, find_images

MAX_FACES = 16  # faces unmasked per photo, largest first
# Smallest detector box side (photo pixels) unmasked: eyes ~10 px apart (maskgen finds none below
# MIN_EYE_DISTANCE = 8 px, a ~18 px box). On the group photos of real-masked-photos, 4 of the 9 faces found
# below 24 px were no masked face (blur, background), against about 1 in 5 above; and the 128 px crop enlarges such
# a face ~3x, so what comes back is a blur.
MIN_FACE = 24
NAME_MAX = 255  # bytes in one file name on the common file systems

# The outputs of an input named NAME (in its mirrored folder): the photo and its map always, the rest on request.
IMAGE_SUFFIX, MAP_SUFFIX, COMPARE_SUFFIX = ".png", "_map.png", "_compare.png"  # NAME.png, NAME_map.png, ...
# Each face k's crops (--save-crops: what the networks saw, their output; --save-maps: the crop's map).
FACE_SUFFIXES = {"crop": ".png", "output": "_unmasked.png", "map": "_map.png"}  # NAME_face00.png, ...
FACE_NAME = re.compile(r"(.*)_face\d+(?:_unmasked|_map)?\.png", re.IGNORECASE | re.DOTALL)  # -> NAME
MAX_FACE_INDEX = 999  # --max-faces' limit: face indices have at most three digits (file name lengths)
RESULTS_FILE = "results.jsonl"  # in OUT: one line per face found (and per input skipped)


class PredictError(Exception):
    """A problem that stops a prediction run (one-line message for the CLI)."""


@dataclass
class PlannedOutput:
    source: Path  # the input image
    image: Path  # where the unmasked image goes: NAME.png
    map: Path  # where the predicted map goes: NAME_map.png

    def _named(self, suffix: str) -> Path:
        return self.image.with_name(self.image.name[:-len(IMAGE_SUFFIX)] + suffix)

    @property
    def compare(self) -> Path:
        return self._named(COMPARE_SUFFIX)

    def face(self, index: int, kind: str) -> Path:
        """Face ``index``'s file of ``kind`` (a key of ``FACE_SUFFIXES``)."""
        return self._named(f"_face{index:02d}{FACE_SUFFIXES[kind]}")


@dataclass
class PredictSummary:
    done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    faces: int = 0  # faces unmasked in the inputs done


def shown(path: str | Path) -> str:
    """A path for messages: printable whatever bytes its name has (``maskgen.source.encode_name``)."""
    return encode_name(os.fspath(path))


def plan_outputs(inputs: Sequence[Path], out: Path) -> tuple[list[PlannedOutput], list[tuple[str, str]]]:
    """Every input image with its output paths under ``out``, and the (input, reason) of what is skipped.

    A folder's images keep their path below it (one folder given: right under ``out``; several: under
    each folder's name, made unique); a file given by itself goes right under ``out``. The outputs are
    NAME.png, NAME_map.png, NAME_compare.png and each face's NAME_faceKK.png, NAME_faceKK_unmasked.png,
    NAME_faceKK_map.png, with NAME the input's name without its suffix, or with it where the names of two
    inputs' outputs would meet (a.jpg and a.png; a.jpg and a_face00.jpg; a file and a folder), then with
    -2, -3, ... (compared ignoring case, for file systems that do). The names are the same whichever
    outputs are asked for. Names too long for the file system are shortened with a hash of the full name.
    ``out/results.jsonl`` is the results file: a folder of that name at the top of the tree is skipped.

    The output folder never holds an input, so outputs never become inputs nor replace one (nor a photo
    next to an input): a folder's walk leaves out the output folder inside it (a rerun into ``photos/out``
    does not unmask the last run's results), and an input in the output folder, or the output folder
    itself given as input, is refused (PredictError) before anything is written.
    """
    in_out = _Within(out)
    sources: list[tuple[Path, PurePosixPath]] = []  # (input file, its path below out, suffix and all)
    skipped: list[tuple[str, str]] = []
    seen: set[Path] = set()
    folders = [item for item in inputs if item.is_dir()]
    for item in inputs:
        if in_out(item):
            what = "input folder" if item in folders else "input"
            where = "is" if item in folders and os.path.samefile(item, out) else "is inside"
            raise PredictError(f"the {what} {shown(item)} {where} the output folder {shown(out)}: "
                               "give an output folder outside the inputs")
    prefixes = _unique_names([item.resolve().name or "root" for item in folders]) if len(folders) > 1 else None
    for item in inputs:
        if item.is_dir():
            files, problems = find_images(item)
            skipped += [(shown(path), reason) for path, reason in problems if not in_out(path)]
            prefix = PurePosixPath(prefixes[folders.index(item)]) if prefixes else PurePosixPath()
            found = [(f, prefix / f.relative_to(item).as_posix()) for f in files if not in_out(f)]
        else:
            found = [(item, PurePosixPath(item.name))]
        for path, rel in found:
            where = Path(os.path.abspath(path))
            if len(rel.parts) > 1 and rel.parts[0].casefold() == RESULTS_FILE:
                skipped.append((shown(path), f"its outputs would go into {shown(out / RESULTS_FILE)}, "
                                             "the results file: rename its folder"))
            elif where not in seen:  # given twice (a file and its folder): done once
                seen.add(where)
                sources.append((path, rel))
    names = _Names()
    for _, rel in sources:  # the mirrored folders are fixed: the files' names give way to them
        for folder in rel.parents:
            if str(folder) != ".":
                names.claim(folder)
    plan = []
    for path, rel in sources:
        for base in _candidate_names(rel):
            name = base.with_name(_fit_name(base.name))
            if names.free(name):
                break
        names.claim_outputs(name)
        plan.append(PlannedOutput(path, out / (str(name) + IMAGE_SUFFIX), out / (str(name) + MAP_SUFFIX)))
    return plan, skipped


class _Names:
    """The names taken under the output folder (compared ignoring case): files, folders, and the NAMEs whose
    face files (NAME_faceKK...) are taken; ``results.jsonl`` from the start."""

    def __init__(self):
        self.taken: set[str] = {RESULTS_FILE}
        self.face_owners: set[str] = set()  # NAME of every taken name shaped like a face file

    def claim(self, path: PurePosixPath) -> None:
        self.taken.add(str(path).casefold())
        owner = FACE_NAME.fullmatch(path.name)
        if owner:
            self.face_owners.add(str(path.with_name(owner.group(1))).casefold())

    def free(self, name: PurePosixPath) -> bool:
        """Whether an input's outputs can be called ``name`` + suffixes: none taken, none a face file of a
        taken NAME, and no taken name one of its face files."""
        fixed = [name.with_name(name.name + suffix) for suffix in (IMAGE_SUFFIX, MAP_SUFFIX, COMPARE_SUFFIX)]
        for path in fixed:
            owner = FACE_NAME.fullmatch(path.name)
            if str(path).casefold() in self.taken or (
                    owner and str(path.with_name(owner.group(1))).casefold() in self.face_owners):
                return False
        return str(name).casefold() not in self.face_owners

    def claim_outputs(self, name: PurePosixPath) -> None:
        for suffix in (IMAGE_SUFFIX, MAP_SUFFIX, COMPARE_SUFFIX):
            self.claim(name.with_name(name.name + suffix))
        self.face_owners.add(str(name).casefold())


class _Within:
    """Whether a path lies in ``folder``, or is a link into it. Folders are compared by identity (device,
    inode), so links, ``..`` and case-insensitive names are seen through; a folder not made yet holds nothing."""

    def __init__(self, folder: Path):
        self.folder = _identity(folder)
        self._known: dict[str, bool] = {}  # resolved path -> in the folder

    def __call__(self, path: Path) -> bool:
        entry = os.path.join(os.path.realpath(path.parent), path.name)  # where the entry lies (a link: not its target)
        return self.folder is not None and (self._resolved(entry) or self._resolved(os.path.realpath(path)))

    def _resolved(self, path: str) -> bool:
        if path not in self._known:
            parent = os.path.dirname(path)
            self._known[path] = _identity(path) == self.folder or (parent != path and self._resolved(parent))
        return self._known[path]


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _unique_names(names: list[str]) -> list[str]:
    """The names with -2, -3, ... added to repeats."""
    counts: dict[str, int] = {}
    unique = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        unique.append(name if counts[name] == 1 else f"{name}-{counts[name]}")
    return unique


def _candidate_names(rel: PurePosixPath):
    """Output names (without suffix) for an input, in order of preference."""
    yield rel.with_suffix("") if rel.suffix else rel
    yield rel
    n = 2
    while True:
        yield rel.with_name(f"{rel.name}-{n}")
        n += 1


def _longest_suffix() -> int:
    face = max(len(f"_face{MAX_FACE_INDEX}{suffix}") for suffix in FACE_SUFFIXES.values())
    return max(face, *(len(s) for s in (IMAGE_SUFFIX, MAP_SUFFIX, COMPARE_SUFFIX)))


def _fit_name(name: str) -> str:
    """``name``, shortened (keeping a hash of it) where its outputs' names would pass NAME_MAX bytes."""
    room = NAME_MAX - _longest_suffix()
    if len(os.fsencode(name)) <= room:
        return name
    tag = "-" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    while len(os.fsencode(name + tag)) > room:
        name = name[:-1]
    return name + tag

"""The pretrained files unmask uses: where they come from, where they are kept, how they are checked.

======================  ==============================================  ==========================================
name                    file (in the torch hub cache)                   used by
======================  ==============================================  ==========================================
``vgg19``               ``vgg19-dcbb9e9d.pth`` (torchvision)            the perceptual loss (``unmask.models.vgg``)
``fid-inception``       ``pt_inception-2015-12-05-6726825d.pth``        FID (``unmask.metrics.fid``)
                        (pytorch-fid)
``lpips-alexnet``       ``alexnet-owt-7be5be79.pth`` (torchvision)      LPIPS's trunk (``unmask.metrics.lpips``)
``lpips-linear``        ``lpips-v0.1-alex.pth`` (the lpips package's    LPIPS's calibration layers
                        ``weights/v0.1/alex.pth``)
======================  ==============================================  ==========================================

Cache: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), where torchvision and pytorch-fid keep these same files: a machine that
has them needs no download. The LPIPS layers get a name of their own there (``alex.pth`` says too little in
a shared folder).

Fetch: when a file is used (``ensure``: the perceptual loss built, FID's network or LPIPS loaded) or ahead of
time (``unmask weights fetch``), from the URL the file's own project downloads it from, written with
``maskgen.files``' atomic writer under a lock beside it (DDP ranks download once): a download that breaks
off or does not verify leaves nothing behind. Asking whether a file can be had (``status``,
``unavailable_reason``: the metrics' availability) only looks and hashes: it never downloads or changes
anything.

Verification: every file's full SHA-256 is pinned (the published files' digests as other projects pin them;
each begins with the 8 hex digits torch.hub puts in the name where the name has them), so only these exact
bytes are used. A cached file under our name that differs is refused, and replaced (removed under the fetch
lock, where no other process is writing it) where the network may be used; offline it is left as it is. An
alias (another tool's copy of the bytes, e.g. torch-fidelity's) is used when it verifies and otherwise
ignored, said once, never removed. For an entry without a full digest the check would be torch.hub's
``check_hash``: the hex digits after the name's last ``-`` must begin the file's SHA-256
(``expected_digest``).

Network: ``unmask --offline`` or ``UNMASK_OFFLINE=1`` forbids it. A file that is missing then, or cannot be
downloaded, is unavailable with a one-line reason (``WeightsError``) and its users go on without it, saying
so: the perceptual term is off, FID and LPIPS are null. A run with ``train.require_pretrained`` (the paper
configurations) fails at its start instead (``required_for``: which files).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING

from maskgen.files import atomic_output, exclusive_lock

if TYPE_CHECKING:  # read, never imported here: models and metrics import this module
    from unmask.config import Config

log = logging.getLogger(__name__)

OFFLINE_ENV = "UNMASK_OFFLINE"
TIMEOUT_S = 60  # per connection attempt and per read: a stalled server fails, a slow one does not
BLOCK = 1 << 20
LOCK_NAME = ".unmask-fetch.lock"  # one per cache folder: fetches from several processes take turns


@dataclass(frozen=True)
class PretrainedFile:
    name: str  # what ``unmask weights fetch NAME`` takes
    file_name: str  # its name in the cache
    url: str
    sha256: str | None  # the full digest; None: only the prefix in the file name is known (torch.hub's check)
    size: int  # bytes, for the progress bar and the listing
    used_for: str
    # Other names of the same bytes in the cache, found but never fetched (torch-fidelity's copy of FID's file).
    aliases: tuple[str, ...] = ()


FILES: dict[str, PretrainedFile] = {entry.name: entry for entry in (
    PretrainedFile(
        "vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574_673_361,
        "the perceptual loss (torchvision's VGG19 IMAGENET1K_V1)"),
    PretrainedFile(
        "fid-inception", "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", 95_628_359,
        "FID (pytorch-fid's port of TensorFlow's 2015-12-05 Inception)",
        aliases=("weights-inception-2015-12-05-6726825d.pth",)),
    PretrainedFile(
        "lpips-alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244_408_911,
        "LPIPS's trunk (torchvision's AlexNet IMAGENET1K_V1)"),
    PretrainedFile(
        "lpips-linear", "lpips-v0.1-alex.pth",
        "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",
        "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6_009,
        "LPIPS's calibration layers (lpips v0.1, alex)"),
)}

_HUB_HASH = re.compile(r"-([0-9a-f]{8,})\.[^.]+$")  # torch.hub's convention: NAME-<sha256 prefix>.EXT


class WeightsError(RuntimeError):
    """A pretrained file is unavailable: missing offline, not downloadable, or not the expected bytes.
    The message is one line naming the file (and the URL, cause, or expected and actual digests)."""


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    import torch.hub  # read at each call: TORCH_HOME and torch.hub.set_dir apply

    return Path(torch.hub.get_dir()) / "checkpoints"


def expected_digest(entry: PretrainedFile) -> str:
    """The full SHA-256, or the prefix the file name carries (torch.hub's check_hash)."""
    if entry.sha256:
        return entry.sha256
    match = _HUB_HASH.search(entry.file_name)
    if not match:
        raise ValueError(f"{entry.name}: no SHA-256 known and none in the file name {entry.file_name}")
    return match.group(1)


_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime): SHA-256; a large file is hashed once


def sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(BLOCK), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def _mismatch(what: str, expected: str, actual: str) -> str | None:
    if actual.startswith(expected):
        return None
    kind = "SHA-256" if len(expected) == 64 else "SHA-256 prefix (the file name's, as torch.hub checks it)"
    return f"refused {what}: {kind} expected {expected}, got {actual}"


def file_problem(path: str | Path) -> str | None:
    """Why a file under a known name (a table entry's, or NAME-<hex>.EXT as torch.hub names them) does not
    hold the bytes its name promises, or None. Files under other names are not judged."""
    path = Path(path)
    entry = next((e for e in FILES.values() if path.name in (e.file_name, *e.aliases)), None)
    if entry is not None:
        expected = expected_digest(entry)
    else:
        match = _HUB_HASH.search(path.name)
        if not match:
            return None
        expected = match.group(1)
    return _mismatch(str(path), expected, sha256(path))


@dataclass(frozen=True)
class Status:
    entry: PretrainedFile
    path: Path  # where it is, or where it would be fetched to
    present: bool
    problem: str | None  # present but not the expected bytes

    @property
    def verified(self) -> bool:
        return self.present and self.problem is None


def _look(path: Path) -> tuple[bool, str | None]:
    """(present, why it is not the expected bytes); a file removed meanwhile (by a fetch replacing it, under the
    lock) or a link to nothing is absent. Something else under the name (a folder, a link loop, a FIFO) is
    present and refused with the reason: never opened, so it neither stops nor blocks its users."""
    try:
        mode = path.stat().st_mode
        if not S_ISREG(mode):
            return True, f"refused {path}: {'a folder' if S_ISDIR(mode) else 'not a regular file'}, not the weights"
        return True, file_problem(path)
    except FileNotFoundError:
        return False, None
    except OSError as error:  # a link loop, no permission
        return True, f"refused {path}: {error.strerror or error}"


_ignored: set[tuple[str, str]] = set()  # (alias, why): each said once per process


def status(name: str) -> Status:
    """What the cache holds for ``name``: looked at and hashed, never fetched or changed. An alias counts
    when it verifies; one that does not is not used (one line says so) and is not reported as ours."""
    entry = FILES[name]
    folder = cache_dir()
    own = folder / entry.file_name
    present, problem = _look(own)
    if present and problem is None:
        return Status(entry, own, True, None)
    for alias in (folder / n for n in entry.aliases):
        alias_present, alias_problem = _look(alias)
        if alias_present and alias_problem is None:
            return Status(entry, alias, True, None)
        if alias_present and (str(alias), alias_problem) not in _ignored:
            _ignored.add((str(alias), alias_problem))
            log.warning("not using %s (another tool's copy of %s): %s", alias, entry.file_name, alias_problem)
    return Status(entry, own, present, problem)


def _offline_reason(found: Status) -> str:
    entry = found.entry
    what = f"{found.problem}; a verified {entry.file_name}" if found.present else entry.file_name
    return (f"{what} not found in {cache_dir()} and downloads are off ({OFFLINE_ENV}=1 / --offline): place it "
            f"there by hand, or run `unmask weights fetch {entry.name}` where the network is reachable")


def unavailable_reason(name: str) -> str | None:
    """Why ``ensure(name)`` cannot give the file, judged without the network: None when the cache holds it
    verified or downloads are allowed (a download is then made on first use, and may still fail there). Only
    looks: availability checks call this, never ``ensure``."""
    found = status(name)
    return None if found.verified or not offline() else _offline_reason(found)


def ensure(name: str) -> Path:
    """The verified file ``name``: from the cache, else downloaded unless offline. Raises ``WeightsError``."""
    found = status(name)
    if found.verified:
        return found.path
    if offline():
        raise WeightsError(_offline_reason(found))
    return fetch(name)


def fetch(name: str) -> Path:
    """Download ``name`` into the cache unless a verified copy is there already; raises ``WeightsError``.
    Our own file with other bytes is removed here, under the lock: never while another process writes it."""
    entry = FILES[name]
    path = cache_dir() / entry.file_name
    with ExitStack() as held:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive_lock(path.with_name(LOCK_NAME)))
        except OSError as error:  # a read-only cache (e.g. a shared one without this file)
            raise WeightsError(f"cannot write to {path.parent}: {error.strerror or error}") from None
        present, problem = _look(path)
        if present and problem is None:  # another process (a DDP rank) fetched it meanwhile
            return path
        removed = None
        if present:  # not these bytes: never used, and out of the way of the download
            try:
                path.unlink()
            except OSError as error:  # a folder: not ours to empty
                raise WeightsError(f"{problem}; it cannot be replaced ({error.strerror or error}): "
                                   "remove it") from None
            removed = f"{problem} (removed)"
            log.warning("%s", removed)
        try:
            _download(entry, path)
        except WeightsError as error:
            raise WeightsError(f"{removed}; {error}" if removed else str(error)) from None
    return path


class _Unreachable(Exception):
    """A network error while reading (kept apart from the writer's OSError, which names the cache file)."""


def _blocks(response) -> Iterator[bytes]:
    while True:
        try:
            block = response.read(BLOCK)
        except (OSError, http.client.HTTPException) as error:
            raise _Unreachable(error) from error
        if not block:
            return
        yield block


def _cause(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    text = " ".join(str(reason if reason is not None else error).split()) or type(error).__name__
    return f"HTTP {error.code} {text}" if isinstance(error, urllib.error.HTTPError) else text


def _download(entry: PretrainedFile, path: Path) -> None:
    from tqdm import tqdm

    by_hand = f"place the file at {path} by hand (downloaded elsewhere from that URL)"
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(entry.url, headers={"User-Agent": "unmask"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, atomic_output(path) as out, \
                tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.file_name, disable=None) as bar:
            log.info("downloading %s to %s (%.0f MB)", entry.url, path, entry.size / 1e6)
            for block in _blocks(response):
                digest.update(block)
                out.write(block)
                bar.update(len(block))
            problem = _mismatch(entry.url, expected_digest(entry), digest.hexdigest())
            if problem:  # raised inside the writer's block: the temporary is removed, nothing is kept
                raise WeightsError(f"{problem}; nothing was kept")
    except _Unreachable as error:
        raise WeightsError(f"cannot download {entry.url} ({_cause(error.__cause__)}): {by_hand}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        raise WeightsError(f"cannot download {entry.url} ({_cause(error)}): {by_hand}") from None
    except OSError as error:  # the writer's: the cache folder is not writable, or the disk is full
        raise WeightsError(f"cannot write {path}: {error.strerror or error}") from None
    log.info("downloaded %s (SHA-256 verified)", path)


def required_for(config: Config) -> tuple[str, ...]:
    """The files a run with ``config`` requires before it starts: none unless ``train.require_pretrained``;
    then VGG19 when the perceptual term is on (``loss.per > 0``) and FID's Inception, which the evaluation
    after training needs. The one rule: ``unmask train`` and pipelines/exp.py's preflight both ask it."""
    if not config.train.require_pretrained:
        return ()
    return (("vgg19",) if config.loss.per > 0 else ()) + ("fid-inception",)


def require(names: tuple[str, ...]) -> dict[str, Path]:
    """Each file verified in the cache (fetched where allowed); ``WeightsError`` for the first that is not."""
    return {name: ensure(name) for name in names}

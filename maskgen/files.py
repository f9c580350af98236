"""Atomic file writing, the one helper for every file the toolkit writes: a reader (or a resumed
build or run) never sees half a file.

Everything is written to ``NAME.tmp-HOST-PID-TOKEN`` next to its destination, fsynced and renamed
into place. The name is unique across machines and processes, so writers sharing a folder (the parts of
one build on several machines) never touch each other's temporaries; leftovers of a killed process are
removed by ``clean_temporaries``, everything or only what a predicate says is provably left over.
A write that fails (a full disk, no permission) raises ``OSError`` naming the destination, with
nothing left under either name.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pandas and numpy are imported by their callers; the other writers need none of them
    import numpy as np
    import pandas as pd

TMP_MARK = ".tmp-"


HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"  # no "-": it separates the name's fields


def temporary_path(path: str | Path) -> Path:
    """Where ``path`` is written before it is renamed into place: unique to this machine and process."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{HOST}-{os.getpid()}-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class Temporary:
    path: Path
    destination: str  # the file name it was to be renamed to
    host: str | None  # None: a name from before hosts were recorded (NAME.tmp-PID)
    pid: int | None

    @property
    def stale(self) -> bool:
        """Provably left over: written on this machine by a process that no longer runs."""
        return self.host in (None, HOST) and self.pid is not None and not _running(self.pid)


def temporaries(folder: Path) -> list[Temporary]:
    """The temporary files in ``folder`` (not recursive)."""
    found = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if TMP_MARK not in p.name or not p.is_file():
                continue
            destination, _, owner = p.name.rpartition(TMP_MARK)
            fields = owner.split("-")
            host, pid = (fields[0], fields[1]) if len(fields) == 3 else (None, fields[0])
            found.append(Temporary(p, destination, host, int(pid) if pid.isdigit() else None))
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as one naming ``path`` (a failed ``write`` names nothing)."""
    try:
        yield
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


def commit_temporary(tmp: Path, path: str | Path) -> None:
    """fsync ``tmp`` and rename it to ``path`` (atomic on one file system)."""
    with naming(path):
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only when the block ends without an error."""
    tmp = temporary_path(path)
    try:
        with naming(path), open(tmp, "wb") as f:
            yield f
        commit_temporary(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def create_exclusive(path: str | Path, data: bytes) -> bool:
    """Write ``path`` whole unless it exists; False when it did (then it is left as it was).

    For a file several processes may create at once: exactly one writer's bytes appear, and a reader
    sees no file or all of it. The temporary is hard-linked into place, which fails when the name
    exists; where the file system has no hard links, the check and the rename are made under a lock
    (``NAME.lock``, left in place: removing it would let a waiting writer lock a file no one else sees).
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with naming(path), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with naming(path):
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
        with exclusive_lock(path.with_name(f"{path.name}.lock")):
            if path.exists():
                return False
            commit_temporary(tmp, path)
            return True
    finally:
        tmp.unlink(missing_ok=True)


def read_json_object(path: str | Path) -> dict:
    """A JSON file that must hold an object (the toolkit's records); ``ValueError`` naming the file when it
    is not valid JSON or not an object. ``OSError`` (e.g. ``FileNotFoundError``) as ``open``'s."""
    data = Path(path).read_bytes()
    try:
        value = json.loads(data)
    except ValueError as err:  # UnicodeDecodeError too
        raise ValueError(f"{path}: is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: is not a JSON object")
    return value


@contextmanager
def exclusive_lock(path: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block; yields whether it is
    held (False only with ``wait=False`` while another process holds it).

    The kernel releases the lock when its process dies, so a lock is never stale; the file stays.
    """
    with naming(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def json_bytes(obj: Any, *, sort_keys: bool = True, allow_nan: bool = True,
               default: Callable[[Any], Any] | None = None) -> bytes:
    """The toolkit's JSON files: a 2-space indent and a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=allow_nan, default=default) + "\n").encode()


def write_json_atomic(path: str | Path, obj: Any, *, sort_keys: bool = True, allow_nan: bool = True,
                      default: Callable[[Any], Any] | None = None) -> None:
    """JSON as ``json_bytes`` writes it."""
    write_bytes_atomic(path, json_bytes(obj, sort_keys=sort_keys, allow_nan=allow_nan, default=default))


def write_parquet_atomic(path: str | Path, frame: pd.DataFrame) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_bytes_atomic(path, buf.getvalue())


def write_csv_atomic(path: str | Path, frame: pd.DataFrame) -> None:
    write_bytes_atomic(path, frame.to_csv(index=False).encode())


def write_png_atomic(path: str | Path, image: np.ndarray) -> None:
    """The one PNG writer: ``image`` as OpenCV takes it (BGR, BGRA or gray), bytes as ``cv2.imwrite``'s."""
    import cv2  # imported here: the other writers need none of it

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    write_bytes_atomic(path, encoded.tobytes())


def clean_temporaries(*folders: Path, left_over: Callable[[Temporary], bool] | None = None) -> int:
    """Remove temporary files left by killed writers; returns how many.

    Without ``left_over`` every temporary in the folders is removed: only for folders no other live
    process writes to (a training run's). A shared folder passes the test of what is provably left over.
    """
    removed = 0
    for folder in folders:
        for tmp in temporaries(folder):
            if left_over is None or left_over(tmp):
                tmp.path.unlink(missing_ok=True)
                removed += 1
    return removed


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

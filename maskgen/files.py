"""Atomic file writing, the one helper for every file the toolkit writes: a reader (or a resumed
build or run) never sees half a file.

Everything is written to ``NAME.tmp-PID`` next to its destination, fsynced and renamed into place;
leftovers of a killed process are removed by ``clean_temporaries``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pandas and numpy are imported by their callers; the other writers need none of them
    import numpy as np
    import pandas as pd

TMP_MARK = ".tmp-"


def temporary_path(path: str | Path) -> Path:
    """Where ``path`` is written before it is renamed into place."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def commit_temporary(tmp: Path, path: str | Path) -> None:
    """fsync ``tmp`` and rename it to ``path`` (atomic on one file system)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only when the block ends without an error."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        commit_temporary(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, obj: Any, *, sort_keys: bool = True, allow_nan: bool = True,
                      default: Callable[[Any], Any] | None = None) -> None:
    """JSON with a 2-space indent and a final newline."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=allow_nan, default=default)
    write_text_atomic(path, text + "\n")


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


def clean_temporaries(*folders: Path) -> int:
    """Remove temporary files left by killed writers; returns how many."""
    removed = 0
    for folder in folders:
        if folder.is_dir():
            for p in folder.iterdir():
                if TMP_MARK in p.name and p.is_file():
                    p.unlink(missing_ok=True)
                    removed += 1
    return removed

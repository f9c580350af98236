"""What the fault-injection tests share: running ``unmask`` in-process, the one-line check, a full disk."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from maskgen import files


def invoke(*args: object):
    from unmask.cli import main  # imported here: maskgen's tests use the full disk without torch

    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file ``maskgen.files`` opens for writing is created, and not one byte fits in it."""

    class Full(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_open = open
    monkeypatch.setattr(files, "open", lambda path, mode="r", *a, **k: Full(path, "w") if mode == "wb"
                        else real_open(path, mode), raising=False)


def dataset_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (a dataset: .work included) by relative path, for byte comparisons."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

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


# A small build that the build-fault tests damage, interrupt or rebuild (tests/reliability/conftest.py's
# ``faces`` and ``clean``): 12 faces, one pair each: 3 train shards and 1 val shard.
ARGS = dict(res=128, seed=2, shard_size=4)
CLI_ARGS = ["--resolution", "128", "--seed", "2", "--shard-size", "4", "--workers", "1", "--no-progress"]


def build_small(faces: Path, out: Path, **kwargs):
    from maskgen.build import BuildConfig, build

    return build(BuildConfig(source=str(faces), out=str(out), workers=1, progress=False, **ARGS, **kwargs))


def cli(*args: object):
    """``maskgen ARGS`` in-process; an exception other than the exit is a failure of the test."""
    from maskgen.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res


def error_line(res) -> str:
    """The one ``Error`` line of a command that exited 1."""
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert res.exit_code == 1 and len(errors) == 1, res.output
    return errors[0]

"""WebDataset shards, written under a temporary name and renamed into place (``maskgen.files``)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from .files import commit_temporary, naming, temporary_path

TAR_MTIME = 946684800  # 2000-01-01: a fixed member time keeps shards byte-identical across runs
TAR_MODE, TAR_OWNER = 0o444, "maskgen"


class ShardWriter:
    """One WebDataset tar, written under a temporary name and renamed by ``commit``.

    A sample is its members ``KEY.EXT`` in sorted order, byte for byte as ``webdataset.TarWriter``
    writes them with the same member time, mode and owner (tested). The headers come from the
    standard library's ``tarfile`` (importing webdataset imports torch, seconds per build for
    nothing); members are written directly, as tarfile's ``addfile`` spends more time copying and
    re-checking each header than the header itself takes.

    ``finish`` returns the record of the bytes written (size and SHA-256), which the build keeps to
    tell a finished shard from one damaged later.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        with naming(self.path):
            self._file = open(self.tmp, "wb")
        self._offset = 0
        self._sha256 = hashlib.sha256()
        self._record: dict | None = None
        self.count = 0

    def _write(self, data: bytes) -> None:
        with naming(self.path):
            self._file.write(data)
        self._sha256.update(data)
        self._offset += len(data)

    def write(self, key: str, members: dict[str, bytes]) -> None:
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            # tarfile's default (PAX) gives a plain ustar header when the name fits one: the fast path.
            plain = len(info.name) <= tarfile.LENGTH_NAME and info.name.isascii()
            header = info.tobuf(tarfile.USTAR_FORMAT if plain else tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            self._write(header)
            self._write(data)
            self._write(tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
        self.count += 1

    def finish(self) -> dict:
        """End the tar (not yet renamed into place); its record: ``{"bytes": size, "sha256": hex digest}``."""
        if self._record is None:
            # What TarFile.close writes: two zero blocks, then zeros up to a whole record.
            end = 2 * tarfile.BLOCKSIZE
            end += -(self._offset + end) % tarfile.RECORDSIZE
            self._write(tarfile.NUL * end)
            with naming(self.path):
                self._file.close()
            self._record = {"bytes": self._offset, "sha256": self._sha256.hexdigest()}
        return self._record

    def commit(self) -> dict:
        """Finish and rename into place; returns the record."""
        record = self.finish()
        commit_temporary(self.tmp, self.path)
        return record

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # flushing failed too (a full disk): the error that led here is the one to report
        finally:
            self.tmp.unlink(missing_ok=True)

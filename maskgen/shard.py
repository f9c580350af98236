"""WebDataset shards, written under a temporary name and renamed into place (``maskgen.files``)."""

from __future__ import annotations

import hashlib
import tarfile
from functools import lru_cache
from pathlib import Path

from .files import commit_temporary, naming, temporary_path

TAR_MTIME = 946684800  # 2000-01-01: a fixed member time keeps shards byte-identical across runs
TAR_MODE, TAR_OWNER = 0o444, "maskgen"


def _header(name: str, size: int) -> bytes:
    """The tar header of a member ``name`` of ``size`` bytes, as tarfile's default (PAX) format writes it."""
    if len(name) <= tarfile.LENGTH_NAME and name.isascii() and size < 8 ** 11:
        return _ustar_header(name.encode("ascii"), size)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, TAR_MODE
    info.uname = info.gname = TAR_OWNER
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@lru_cache(maxsize=1)
def _blank_header() -> tuple[bytes, int]:
    """tarfile's ustar header with an empty name and size 0, with its checksum field blank; the sum of
    its bytes (the checksum counts the blank field as spaces)."""
    info = tarfile.TarInfo("")
    info.size, info.mtime, info.mode = 0, TAR_MTIME, TAR_MODE
    info.uname = info.gname = TAR_OWNER
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    header[148:156] = b" " * 8
    header[124:136] = bytes(12)
    return bytes(header), sum(header)


def _ustar_header(name: bytes, size: int) -> bytes:
    """``_blank_header`` with ``name`` (ASCII, <= 100 bytes) and ``size`` (octal, as tarfile's ``itn``)
    filled in and the checksum (six octal digits, NUL, space: tarfile's layout) recomputed."""
    blank, blank_sum = _blank_header()
    size_field = b"%011o\0" % size
    checksum = blank_sum + sum(name) + sum(size_field)
    header = bytearray(blank)
    header[0:len(name)] = name
    header[124:136] = size_field
    header[148:155] = b"%06o\0" % checksum
    return bytes(header)


class ShardWriter:
    """One WebDataset tar, written under a temporary name and renamed by ``commit``.

    A sample is its members ``KEY.EXT`` in sorted order, byte for byte as ``webdataset.TarWriter``
    writes them with the same member time, mode and owner (tested). The headers are the standard
    library's ``tarfile`` ones (importing webdataset imports torch, seconds per build for nothing):
    a plain ustar header is ``tarfile``'s header for an empty name and size with those two fields
    and the checksum filled in (``_ustar_header``), a quarter of ``tarfile``'s cost; other names
    (long, non-ASCII) take ``tarfile``'s PAX path. A sample is one write.

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
        parts = []
        for ext in sorted(members):
            data = members[ext]
            parts += (_header(f"{key}.{ext}", len(data)), data, tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))
        self._write(b"".join(parts))
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

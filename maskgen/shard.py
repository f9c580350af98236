"""WebDataset shards, written under a temporary name and renamed into place (``maskgen.files``)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from .files import commit_temporary, temporary_path

TAR_MTIME = 946684800  # 2000-01-01: a fixed member time keeps shards byte-identical across runs
TAR_MODE, TAR_OWNER = 0o444, "maskgen"


class ShardWriter:
    """One WebDataset tar, written under a temporary name and renamed by ``commit``.

    A sample is its members ``KEY.EXT`` in sorted order, byte for byte as ``webdataset.TarWriter``
    writes them with the same member time, mode and owner (tested). The headers come from the
    standard library's ``tarfile`` (importing webdataset imports torch, seconds per build for
    nothing); members are written directly, as tarfile's ``addfile`` spends more time copying and
    re-checking each header than the header itself takes.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        self._file = open(self.tmp, "wb")
        self._offset = 0
        self.count = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            # tarfile's default (PAX) gives a plain ustar header when the name fits one: the fast path.
            plain = len(info.name) <= tarfile.LENGTH_NAME and info.name.isascii()
            header = info.tobuf(tarfile.USTAR_FORMAT if plain else tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            padding = -len(data) % tarfile.BLOCKSIZE
            self._file.write(header)
            self._file.write(data)
            self._file.write(tarfile.NUL * padding)
            self._offset += len(header) + len(data) + padding
        self.count += 1

    def _finish(self) -> None:
        # What TarFile.close writes: two zero blocks, then zeros up to a whole record.
        end = 2 * tarfile.BLOCKSIZE
        end += -(self._offset + end) % tarfile.RECORDSIZE
        self._file.write(tarfile.NUL * end)
        self._file.close()

    def commit(self) -> None:
        self._finish()
        commit_temporary(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

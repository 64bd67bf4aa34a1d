"""Tar archives with fixed metadata, so the same members always give the same bytes."""

from __future__ import annotations

import io
import tarfile
from typing import BinaryIO


class DeterministicTarWriter:
    """Writes regular-file members with mtime 0, root owner and mode 0644 into ``fileobj``.

    Args:
        fileobj: a writable binary stream (a Beam ``FileSystems.create`` handle or a local file).
    """

    def __init__(self, fileobj: BinaryIO):
        # PAX keeps long and non-ASCII member names without the GNU extensions some readers lack.
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> DeterministicTarWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Files on any Beam filesystem, written atomically: a temporary name first, then a rename."""

from __future__ import annotations

import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

TEMP_DIR = "_capfilt_tmp"
RAW = CompressionTypes.UNCOMPRESSED  # never let the file name pick a codec: bytes go out as given


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def open_raw(path: str):
    return FileSystems.open(path, compression_type=RAW)


def read_bytes(path: str) -> bytes:
    with open_raw(path) as handle:
        return handle.read()


class AtomicFile:
    """A writable file whose bytes appear at ``path`` only on ``commit``.

    The temporary file lives under ``output_dir/_capfilt_tmp`` with a unique name, so concurrent attempts
    at the same shard (retries, speculative work) never write into each other's files.
    """

    def __init__(self, path: str, output_dir: str):
        self.path = path
        name = path.rstrip("/").rsplit("/", 1)[-1]
        self.temp = join(join(output_dir, TEMP_DIR), f"{name}.{uuid.uuid4().hex}")
        self._handle = FileSystems.create(self.temp, compression_type=RAW)

    def write(self, data: bytes) -> int:
        return self._handle.write(data)

    def commit(self) -> None:
        """Close and rename into place; a failure removes the temporary file and raises."""
        try:
            self._handle.close()
            FileSystems.rename([self.temp], [self.path])
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        try:
            if not self._handle.closed:
                self._handle.close()
        finally:
            if FileSystems.exists(self.temp):
                FileSystems.delete([self.temp])


def make_dir(path: str) -> None:
    """Create a folder where the filesystem has folders (object stores have none: a no-op there)."""
    try:
        FileSystems.mkdirs(path)
    except OSError:  # it exists already
        pass


def write_bytes(path: str, data: bytes, output_dir: str) -> None:
    target = AtomicFile(path, output_dir)
    try:
        target.write(data)
    except BaseException:
        target.discard()
        raise
    target.commit()


def remove_temp_dir(output_dir: str) -> None:
    """Delete what interrupted attempts left behind; call only when no shard is being written."""
    temp = join(output_dir, TEMP_DIR)
    leftovers = [m.path for m in FileSystems.match([join(temp, "*")])[0].metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)
    if FileSystems.exists(temp):  # object stores have no folders; local disks do
        FileSystems.delete([temp])

"""Finding input shards and streaming their samples out of tar archives without extracting anything."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from braceexpand import braceexpand

from .sample import Sample
from .video import VIDEO_EXTENSIONS

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# What a stream that ends early or is not gzip raises, besides tarfile's own errors.
TRUNCATION_ERRORS = (tarfile.ReadError, EOFError, zlib.error, gzip.BadGzipFile)


class ShardFormatError(Exception):
    """The shard is not a readable tar archive at all (recorded as a failed shard)."""


def match_shards(pattern: str) -> list[str]:
    """Expand braces, then match each glob on its Beam filesystem; sorted, without duplicates.

    Only names ending in .tar, .tar.gz or .tgz are shards.
    """
    from apache_beam.io.filesystems import FileSystems

    paths: set[str] = set()
    for glob in braceexpand(pattern):
        for result in FileSystems.match([glob])[0].metadata_list:
            if result.path.endswith(SHARD_SUFFIXES):
                paths.add(result.path)
    return sorted(paths)


def shard_name(path: str) -> str:
    """The output base name of a shard: its file name without the archive suffix."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in SHARD_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def split_member_name(name: str) -> tuple[str, str] | None:
    """WebDataset's key and extension: the path up to the first dot of the file name, and the rest."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{folder}/{stem}" if folder else stem), ext


def unsafe_key(key: str) -> bool:
    """Keys that would escape a folder if a consumer extracted the output tar."""
    return key.startswith("/") or ".." in key.split("/")


class TarSamples:
    """Streams a tar (plain or gzip) and yields one Sample per run of consecutive members sharing a key.

    Links and special members are never read; members over ``max_member_bytes`` (video members: over
    ``video_member_bytes``) are skipped unread and noted. A cut-off archive ends the stream: complete samples
    before the cut are yielded, the sample being read when it broke is yielded with status ``truncated``, and
    ``truncation`` says what broke.
    Iterating raises ShardFormatError when the stream is not a tar archive (that includes an empty file: a
    valid tar, even one with no member, has its end-of-archive blocks).

    Args:
        fileobj: a readable binary stream positioned at the start of the archive.
        max_member_bytes: the largest member read into memory.
        video_member_bytes: the largest video member read (default: ``max_member_bytes``).
    """

    def __init__(self, fileobj: BinaryIO, max_member_bytes: int, video_member_bytes: int | None = None):
        self._fileobj = fileobj
        self._max_member_bytes = max_member_bytes
        self._video_member_bytes = video_member_bytes or max_member_bytes
        self.truncation = ""

    def __iter__(self) -> Iterator[Sample]:
        ended_early = []

        class _Info(tarfile.TarInfo):
            # tarfile ends a stream quietly when a header block is short or missing; a complete archive
            # ends with a zero block instead, so a short block here means the archive was cut.
            @classmethod
            def frombuf(cls, buf, encoding, errors):
                if len(buf) < tarfile.BLOCKSIZE:
                    ended_early.append(len(buf))
                return super().frombuf(buf, encoding, errors)

        try:
            archive = tarfile.open(fileobj=self._fileobj, mode="r|*", tarinfo=_Info)
        except tarfile.ReadError as exc:
            if "empty file" in str(exc):
                raise ShardFormatError("empty file (0 bytes): not a tar archive") from exc
            if "truncated header" in str(exc):
                # Less than one 512-byte header: an error page or a stub saved under a shard's name far more
                # often than a real archive cut before its first member; either way it holds no sample.
                raise ShardFormatError("not a tar archive: shorter than one 512-byte tar header") from exc
            raise ShardFormatError(f"not a tar archive: {exc}") from exc
        except TRUNCATION_ERRORS as exc:  # a gzip stream that breaks before the first header
            self.truncation = f"archive cut short: {exc}"
            return
        current: Sample | None = None
        seen: set[str] = set()  # keys only: a few MB even for very large shards
        try:
            for info in archive:
                parts = None if info.isdir() else split_member_name(info.name)
                if parts is None:
                    continue
                if current is None or current.key != parts[0]:
                    if current is not None:
                        yield current
                    current = Sample(key=parts[0])
                    if current.key in seen:
                        current.drop("duplicate_key", "key seen earlier in this shard")
                    seen.add(current.key)
                self._add_member(archive, info, parts[1], current)
            if ended_early:
                raise tarfile.ReadError("no end-of-archive marker")
        except TRUNCATION_ERRORS as exc:
            self.truncation = f"archive cut short: {exc}"
            if current is not None:
                current.drop("truncated", self.truncation)
        if current is not None:
            yield current

    def _add_member(self, archive: tarfile.TarFile, info: tarfile.TarInfo, ext: str, sample: Sample) -> None:
        if not info.isfile():
            sample.note("link_member_ignored", f"{info.name} (not followed)")
        elif info.size > (self._video_member_bytes if ext.lower() in VIDEO_EXTENSIONS else self._max_member_bytes):
            sample.note("member_too_large", f"{info.name} ({info.size} bytes, not read)")
            sample.oversized.append(ext)
        elif ext in sample.members:
            sample.note("duplicate_member_ignored", info.name)
        else:
            sample.members[ext] = archive.extractfile(info).read()

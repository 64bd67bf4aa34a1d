import gzip
import io
import random
import tarfile

import pytest

from capfilt.pipeline.shard.reader import ShardFormatError, TarSamples, match_shards, shard_name, split_member_name
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter


def tar_bytes(members, links=()) -> bytes:
    buffer = io.BytesIO()
    with DeterministicTarWriter(buffer) as tar:
        for name, data in members:
            tar.add(name, data)
        for name, kind, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar._tar.addfile(info)
    return buffer.getvalue()


def read(data: bytes, limit=1 << 20):
    reader = TarSamples(io.BytesIO(data), limit)
    return [(s.key, sorted(s.members), s.status) for s in reader], reader


@pytest.mark.parametrize(
    "name,expected",
    [
        ("abc.jpg", ("abc", "jpg")),
        ("abc.seg.png", ("abc", "seg.png")),
        ("dir.v2/sub/abc.txt", ("dir.v2/sub/abc", "txt")),
        ("noext", None),
        ("dir/.hidden", None),
    ],
)
def test_keys_follow_webdataset(name, expected):
    assert split_member_name(name) == expected


def test_groups_consecutive_members_by_key():
    data = tar_bytes([("a.jpg", b"1"), ("a.txt", b"t"), ("a.json", b"{}"), ("d.x/b.png", b"2"), ("d.x/b.txt", b"u")])
    samples, reader = read(data)
    assert samples == [("a", ["jpg", "json", "txt"], "pending"), ("d.x/b", ["png", "txt"], "pending")]
    assert reader.truncation == ""


def test_repeated_key_later_in_shard_is_dropped_not_merged():
    samples, _ = read(tar_bytes([("a.jpg", b"1"), ("b.jpg", b"2"), ("a.txt", b"late")]))
    assert [(k, s) for k, _, s in samples] == [("a", "pending"), ("b", "pending"), ("a", "duplicate_key")]


def test_links_are_never_followed():
    data = tar_bytes(
        [("a.txt", b"t")], links=[("a.jpg", tarfile.SYMTYPE, "/etc/passwd"), ("b.jpg", tarfile.LNKTYPE, "a.txt")]
    )
    reader = TarSamples(io.BytesIO(data), 1 << 20)
    samples = list(reader)
    assert [s.key for s in samples] == ["a", "b"]
    assert samples[0].members == {"txt": b"t"} and samples[1].members == {}
    assert any("link_member_ignored" in n for n in samples[0].notes + samples[1].notes)


def test_oversized_member_is_skipped_unread():
    samples = list(TarSamples(io.BytesIO(tar_bytes([("a.jpg", b"x" * 5000), ("a.txt", b"t")])), 4096))
    assert samples[0].members == {"txt": b"t"}
    assert samples[0].notes[0].startswith("member_too_large")


@pytest.mark.parametrize("cut", [0.3, 0.55, 0.8, 0.99])
def test_truncated_archive_keeps_complete_samples(cut):
    members = [(f"k{i}.{ext}", b"z" * 3000) for i in range(4) for ext in ("jpg", "txt")]
    data = tar_bytes(members)
    end_of_members = len(members) * (512 + 3072)  # each member: a header block and its padded data
    samples, reader = read(data[: int(end_of_members * cut)])
    assert reader.truncation.startswith("archive cut short")
    assert samples[-1][2] == "truncated"
    assert all(status == "pending" and members == ["jpg", "txt"] for _, members, status in samples[:-1])


def test_gzip_archives_are_read_and_cut_ones_detected():
    noise = random.Random(0).randbytes(20000)  # incompressible, so half the gzip is half the tar
    data = gzip.compress(tar_bytes([("a.jpg", noise), ("a.txt", b"t"), ("b.jpg", noise)]), mtime=0)
    samples, reader = read(data)
    assert [k for k, _, _ in samples] == ["a", "b"] and reader.truncation == ""
    samples, reader = read(data[: len(data) // 2])
    assert reader.truncation and samples[-1][2] == "truncated"


@pytest.mark.parametrize("data", [b"<html>404</html>" * 50, b"\x1f\x8b\x08 not really gzip" * 20])
def test_not_a_tar_raises_format_error(data):
    with pytest.raises(ShardFormatError):
        list(TarSamples(io.BytesIO(data), 1 << 20))


def test_a_tar_without_members_has_no_samples_but_a_file_without_a_tar_header_is_not_a_tar():
    assert read(tar_bytes([]))[0] == []
    with pytest.raises(ShardFormatError, match="empty file"):
        read(b"")
    with pytest.raises(ShardFormatError, match="shorter than one 512-byte tar header"):
        read(tar_bytes([("a.jpg", b"1")])[:300])
    samples, reader = read(tar_bytes([("a.jpg", b"1" * 400)])[:700])  # the header whole, the data cut
    assert [status for _, _, status in samples] == ["truncated"] and reader.truncation


def test_match_shards_braces_and_globs(tmp_path):
    for name in ("00000.tar", "00001.tar.gz", "00002.tgz", "00003.tar", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [shard_name(p) for p in match_shards(str(tmp_path / "*"))] == ["00000", "00001", "00002", "00003"]
    assert [shard_name(p) for p in match_shards(str(tmp_path / "{00000..00001}.tar*"))] == ["00000", "00001"]
    assert match_shards(str(tmp_path / "missing-*.tar")) == []

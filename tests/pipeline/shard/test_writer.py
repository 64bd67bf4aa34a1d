import json
import tarfile

import pytest
from apache_beam.io.filesystems import FileSystems

from capfilt.pipeline import storage
from capfilt.pipeline.policy import Candidate, Decision
from capfilt.pipeline.report.build import write_report
from capfilt.pipeline.shard.sample import Sample
from capfilt.pipeline.shard.writer import ShardWriter
from capfilt.pipeline.stats import Stats


def kept_sample(key: str) -> Sample:
    chosen = Candidate("a red square", 0.9, "synthetic")
    sample = Sample(
        key=key,
        members={"JPG": b"\xff\xd8 raw bytes", "json": b'{"url": "u"}', "cls": b"7", "TXT": b"buy now"},
        status="kept",
        image_ext="JPG",
        web_text="buy now",
        web_score=0.1,
        meta={"url": "u", "capfilt": "old"},
        meta_text='{"url": "u"}',
        synthetic=["a red square", "a blue square"],
        synthetic_scores=[0.9, 0.2],
        decision=Decision(chosen, kept=(chosen,)),
    )
    return sample


def dropped_sample(key: str) -> Sample:
    sample = Sample(key=key, notes=["no_txt"])
    sample.drop("undecodable_image", "cannot identify image file")
    return sample


def write(out, name="00000"):
    writer = ShardWriter(str(out), name, "best")
    for sample in (kept_sample("a"), dropped_sample("b"), kept_sample("dir.x/c")):
        writer.write(sample)
    return writer


def test_nothing_visible_until_commit_and_stats_last(tmp_path):
    writer = write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [storage.TEMP_DIR]
    writer.commit(Stats(shards=1, input=3), shard="00000")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000.parquet",
        "00000.tar",
        "00000_stats.json",
        storage.TEMP_DIR,
    ]
    assert list((tmp_path / storage.TEMP_DIR).iterdir()) == []


def test_every_file_arrives_by_rename_from_the_temp_folder_and_stats_last(tmp_path, monkeypatch):
    created, renamed = [], []
    create, rename = FileSystems.create, FileSystems.rename
    monkeypatch.setattr(FileSystems, "create", lambda path, *a, **k: created.append(path) or create(path, *a, **k))
    monkeypatch.setattr(FileSystems, "rename", lambda src, dst: renamed.extend(dst) or rename(src, dst))
    write(tmp_path).commit(Stats(shards=1, input=3), shard="00000")
    assert all(f"/{storage.TEMP_DIR}/" in path for path in created) and len(created) == 3
    assert [p.rsplit("/", 1)[-1] for p in renamed] == ["00000.tar", "00000.parquet", "00000_stats.json"]


@pytest.mark.parametrize("failing", ["00000.parquet", "00000_stats.json"])
def test_a_write_failing_during_commit_leaves_no_stats_file(tmp_path, monkeypatch, failing):
    rename = FileSystems.rename

    def flaky(src, dst):
        if dst[0].endswith(failing):
            raise OSError("disk full")
        return rename(src, dst)

    monkeypatch.setattr(FileSystems, "rename", flaky)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path).commit(Stats(shards=1, input=3), shard="00000")
    assert not (tmp_path / "00000_stats.json").exists() and not (tmp_path / failing).exists()
    assert not [p for p in (tmp_path / storage.TEMP_DIR).iterdir()], "the failed file's temp copy is removed"


def test_discard_leaves_nothing(tmp_path):
    write(tmp_path).discard()
    assert list((tmp_path / storage.TEMP_DIR).iterdir()) == []
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_same_samples_give_byte_identical_files(tmp_path):
    for out in ("a", "b"):
        write(tmp_path / out).commit(Stats(shards=1), shard="00000")
    for name in ("00000.tar", "00000.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_kept_members_keep_original_bytes_and_extension(tmp_path):
    write(tmp_path).commit(Stats(shards=1), shard="00000")
    with tarfile.open(tmp_path / "00000.tar") as tar:
        names = tar.getnames()
        # Input order; the caption and the json replace theirs in place, whatever the extension's case.
        assert names == ["a.JPG", "a.json", "a.cls", "a.txt"] + [f"dir.x/c.{e}" for e in ("JPG", "json", "cls", "txt")]
        assert tar.extractfile("a.JPG").read() == b"\xff\xd8 raw bytes"
        assert tar.extractfile("a.cls").read() == b"7"
        assert tar.extractfile("a.txt").read() == b"a red square"
        meta = json.loads(tar.extractfile("a.json").read())
    # Input fields stay; an input "capfilt" field is replaced by this run's record.
    assert meta["url"] == "u"
    assert meta["capfilt"] == {
        "caption": "a red square",
        "source": "synthetic",
        "score": 0.9,
        "web": {"text": "buy now", "score": 0.1},
        "synthetic": [{"text": "a red square", "score": 0.9}, {"text": "a blue square", "score": 0.2}],
        "policy": "best",
    }


def test_report_sums_stats_and_marks_success(tmp_path):
    a, b = Stats(shards=1, input=3, kept=2, kept_web=2), Stats(shards=1, input=4, kept=1, kept_synthetic=1)
    a.dropped, b.dropped = {"below_threshold": 1}, {"below_threshold": 2, "no_image": 1}
    (tmp_path / storage.TEMP_DIR).mkdir()
    (tmp_path / storage.TEMP_DIR / "00009.tar.leftover").write_bytes(b"partial")
    report = write_report(str(tmp_path), a + b, {"name": "demo", "filter": {"threshold": 0.5}})
    assert report["totals"]["input"] == 7 and report["totals"]["kept"] == 3
    assert report["totals"]["dropped"] == {"below_threshold": 3, "no_image": 1}
    assert (tmp_path / "_SUCCESS").exists() and not (tmp_path / storage.TEMP_DIR).exists()

"""ShardSink: every job's samples reach the three files through it; a failed shard still gets them, and an
attempt that raises leaves nothing behind."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from capfilt.pipeline.config import VideoConfig
from capfilt.pipeline.shard.sample import Sample
from capfilt.pipeline.shard.sink import ShardSink


def sink(out) -> ShardSink:
    return ShardSink(str(out), "00000", "best", "itm", False, 10**8, VideoConfig(), {"fingerprint": "f"})


def dropped(key: str) -> Sample:
    sample = Sample(key=key, members={"txt": b"x"})
    sample.drop("no_image", "no image member")
    return sample


def test_an_unreadable_shard_gets_an_empty_tar_no_rows_and_stats_saying_why(tmp_path):
    shard = sink(tmp_path)
    shard.add(dropped("a"))  # whatever came before the failure is not counted or written
    stats = shard.fail("not a tar archive: bad header")
    assert (stats.input, stats.failed_shards) == (0, ["00000"])
    assert (tmp_path / "00000.tar").stat().st_size > 0 and pq.read_table(tmp_path / "00000.parquet").num_rows == 0
    written = json.loads((tmp_path / "00000_stats.json").read_text())
    assert written["error"] == "not a tar archive: bad header" and written["per_shard"]["00000"]["status"] == "failed"
    assert written["fingerprint"] == "f"


def test_an_attempt_that_raises_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError), sink(tmp_path) as shard:
        shard.add(dropped("a"))
        raise RuntimeError("worker lost")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_commit_counts_each_sample_once_and_records_the_status(tmp_path):
    shard = sink(tmp_path)
    for key in ("a", "b"):
        shard.add(dropped(key))
    stats = shard.commit("truncated", "cut short after b")
    assert (stats.input, stats.dropped, stats.truncated_shards) == (2, {"no_image": 2}, ["00000"])
    assert [r["key"] for r in pq.read_table(tmp_path / "00000.parquet").to_pylist()] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown shard status"):
        sink(tmp_path / "other").commit("done")

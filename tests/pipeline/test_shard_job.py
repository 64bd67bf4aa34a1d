"""The job shape every capfilt job shares (``shard_job``: ShardFn, the wiring, ``resume``, ``ShardSink``): a new job
written on it, with no model and no copy of run's or select's code, gives a complete capfilt output."""

from __future__ import annotations

import json
from dataclasses import dataclass

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from capfilt.pipeline import storage
from capfilt.pipeline.config import DecodeConfig, VideoConfig, settings_fingerprint
from capfilt.pipeline.errors import ConfigError
from capfilt.pipeline.policy import decide
from capfilt.pipeline.report.build import write_report
from capfilt.pipeline.resume import SettingsMismatch, complete_shards, recorded_settings
from capfilt.pipeline.shard.decode import decode_sample
from capfilt.pipeline.shard.reader import TarSamples, shard_name
from capfilt.pipeline.shard.sink import ShardSink
from capfilt.pipeline.shard_job import ShardFn, write_shards
from tests.helpers import assert_complete, sample_members, write_shard


@dataclass(frozen=True)
class TrustWeb:
    """A third job's settings: keep every sample whose web caption has at least ``min_words`` words."""

    min_words: int

    def output_settings(self) -> dict:
        return {"trust_web": {"min_words": self.min_words}}

    def fingerprint(self) -> str:
        return settings_fingerprint(self.output_settings())

    def settings_known(self) -> bool:
        return True


class TrustWebFn(ShardFn):
    def write_shard(self, path: str):
        sink = ShardSink(
            self.output_dir,
            shard_name(path),
            "best",
            "itm",
            False,
            10**8,
            VideoConfig(),
            recorded_settings(self.config),
        )
        with sink, storage.open_raw(path) as stream:
            for sample in TarSamples(stream, DecodeConfig().max_member_bytes, VideoConfig().max_member_bytes):
                sample = decode_sample(sample, DecodeConfig())
                if sample.live and sample.web_text:
                    sample.web_score = float(len(sample.web_text.split()) >= self.config.min_words)
                decide(sample, "best", 0.5, 0.0)
                sink.add(sample)
        return sink.commit()


def run_job(paths: list[str], out, settings: TrustWeb, overwrite: bool = False):
    with beam.Pipeline(runner="FnApiRunner") as p:
        shards = p | beam.Create(paths)
        write_shards(
            shards, "TrustWeb", TrustWebFn(settings, str(out), overwrite), lambda t: write_report(str(out), t, {})
        )


@pytest.fixture
def input_shards(tmp_path):
    paths = []
    for shard in range(2):
        members = []
        for i, text in enumerate(["a red square", "red", None, "a small green square"]):
            members += sample_members(f"s{shard}_{i}", text)
            if i == 0:
                members.append((f"s{shard}_0.cls", b"7"))  # an extra member travels with its kept sample
        paths.append(str(write_shard(tmp_path / "in" / f"{shard:05d}.tar", members)))
    return paths


def test_a_new_job_on_the_base_writes_a_complete_accounted_output(input_shards, tmp_path):
    out = tmp_path / "out"
    run_job(input_shards, out, TrustWeb(min_words=2))
    for shard in ("00000", "00001"):
        rows = pq.read_table(out / f"{shard}.parquet").to_pylist()
        assert [r["status"] for r in rows] == ["kept", "below_threshold", "no_caption", "kept"]
        stats = json.loads((out / f"{shard}_stats.json").read_text())
        assert (stats["input"], stats["kept"], stats["dropped"]) == (4, 2, {"below_threshold": 1, "no_caption": 1})
        assert stats["fingerprint"] == TrustWeb(2).fingerprint()
        for path in out.glob(f"{shard}*"):
            assert_complete(path)
    kept = list(wds.WebDataset(str(out / "00000.tar"), shardshuffle=False))
    assert [s["__key__"] for s in kept] == ["s0_0", "s0_3"]
    assert json.loads(kept[0]["json"])["capfilt"]["caption"] == "a red square" and kept[0]["cls"] == b"7"
    report = json.loads((out / "report.json").read_text())
    assert (report["totals"]["input"], report["totals"]["kept"]) == (8, 4)
    assert (out / "_SUCCESS").exists() and json.loads((out / "sizes.json").read_text()) == {
        "00000.tar": 2,
        "00001.tar": 2,
    }


def test_the_base_resumes_the_same_settings_and_refuses_others(input_shards, tmp_path):
    out = tmp_path / "out"
    run_job(input_shards[:1], out, TrustWeb(min_words=2))
    first = (out / "00000.tar").stat().st_mtime_ns
    assert complete_shards(["00000", "00001"], str(out), TrustWeb(2)) == ["00000"]
    run_job(input_shards, out, TrustWeb(min_words=2))
    assert (out / "00000.tar").stat().st_mtime_ns == first  # skipped, not rewritten
    assert json.loads((out / "report.json").read_text())["totals"]["input"] == 8
    with pytest.raises(ConfigError, match="other settings"):
        complete_shards(["00000", "00001"], str(out), TrustWeb(1))
    with pytest.raises(Exception, match="other settings"):  # a worker that meets the shard checks it too
        run_job(input_shards, out, TrustWeb(min_words=1))
    run_job(input_shards, out, TrustWeb(min_words=1), overwrite=True)
    rows = pq.read_table(out / "00000.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["kept", "kept", "no_caption", "kept"]
    assert issubclass(SettingsMismatch, ValueError)

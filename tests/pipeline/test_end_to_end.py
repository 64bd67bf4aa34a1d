"""The real entry point over tiny shards and tiny BLIP models on Beam's FnApiRunner, checked against the contract."""

import json
import tarfile
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from apache_beam.metrics.metric import MetricsFilter
from capfilt.pipeline import beam_job as job
from capfilt.pipeline.cli import main
from capfilt.pipeline.config import load_config
from capfilt.pipeline.shard.reader import match_shards

from tests.conftest import sample_members, write_shard


@pytest.fixture
def messy(tmp_path) -> Path:
    """One shard with ordinary samples plus a broken image, a sample without image and one without caption."""
    members = []
    for i in range(5):
        members += sample_members(f"ok{i}", f"a red square number {i}", meta={"url": f"u{i}", "rank": i})
    members += [("broken.jpg", b"<html>not found</html>"), ("broken.txt", b"a broken image")]
    members += [("textonly.txt", b"just words"), ("textonly.json", b"{}")]
    members += sample_members("nocaption", None, meta={"url": "n"})
    write_shard(tmp_path / "in" / "00000.tar", members)
    return tmp_path / "in"


TEST_SETTINGS = {
    "captioner.num_captions": 3,
    "captioner.min_length": 2,
    "captioner.max_length": 5,
    "captioner.batch_size": 4,
    # Random weights score everything near 0.5: threshold 0 keeps all unless a test says otherwise.
    "filter.threshold": 0,
    "runtime.threads": 1,
}


def run_argv(tiny_models, input_pattern: str, out) -> list[str]:
    """`capfilt run demo` over ``input_pattern`` with the tiny models and the tests' settings."""
    settings = {"captioner.model": tiny_models[0], "filter.model": tiny_models[1], **TEST_SETTINGS}
    sets = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    return ["run", "demo", "--input", input_pattern, "--output", str(out), *sets]


def run(tiny_models, inp, out, *extra, pattern="*.tar"):
    return main([*run_argv(tiny_models, str(inp / pattern), out), *extra])


def rows(out: Path):
    return [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_every_sample_accounted_and_output_follows_the_contract(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    table = rows(out)
    assert len(table) == 12 and len({r["key"] for r in table}) == 12
    kept = {r["key"]: r for r in table if r["status"] == "kept"}
    for shard in ("00000", "00001"):
        stats = json.loads((out / f"{shard}_stats.json").read_text())
        assert stats["input"] == 6 and stats["kept"] + sum(stats["dropped"].values()) == 6
        source = {m.name: m for m in tarfile.open(shards / f"{shard}.tar")}
        with tarfile.open(out / f"{shard}.tar") as tar:
            for member in tar:
                assert member.mtime == 0 and member.uid == 0 and member.mode == 0o644
                data = tar.extractfile(member).read()
                key, ext = member.name.split(".", 1)
                original = tarfile.open(shards / f"{shard}.tar")
                if ext == "jpg":
                    assert data == original.extractfile(source[member.name]).read()
                if ext == "json":
                    meta = json.loads(data)
                    assert meta["url"] == json.loads(original.extractfile(source[member.name]).read())["url"]
                    assert meta["capfilt"]["caption"] == kept[key]["caption"]
                    assert meta["capfilt"]["policy"] == "best"
                    assert len(meta["capfilt"]["synthetic"]) == 3
                if ext == "txt":
                    assert data.decode() == kept[key]["caption"]
    # The no-caption samples (index 3) had no web candidate, so their caption is synthetic.
    assert all(kept[k]["source"] == "synthetic" and kept[k]["web_text"] is None for k in ("s0_003", "s1_003"))
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["input"] == 12 and (out / "_SUCCESS").exists()
    assert not (out / "_capfilt_tmp").exists()


def test_output_reads_back_with_webdataset(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    dataset = wds.WebDataset(str(out / "{00000..00001}.tar"), shardshuffle=False).decode("pil")
    seen = 0
    for sample in dataset:
        assert sample["jpg"].size == (24, 16)
        assert sample["txt"] == sample["json"]["capfilt"]["caption"]
        seen += 1
    assert seen == sum(r["status"] == "kept" for r in rows(out))


def test_bad_samples_become_rows_with_reasons(tiny_models, messy, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, messy, out) == 0
    status = {r["key"]: (r["status"], r["error"]) for r in rows(out)}
    assert len(status) == 8
    assert status["broken"][0] == "undecodable_image"
    assert status["textonly"][0] == "no_image"
    assert status["nocaption"] == ("kept", "no_txt")
    stats = json.loads((out / "00000_stats.json").read_text())
    assert stats["dropped"] == {"no_image": 1, "undecodable_image": 1} and stats["kept"] == 6


def test_threshold_and_policies_decide_what_is_kept(tiny_models, shards, tmp_path):
    assert run(tiny_models, shards, tmp_path / "strict", "--set", "filter.threshold=0.99") == 0
    assert {r["status"] for r in rows(tmp_path / "strict")} == {"below_threshold"}
    assert not [m for m in tarfile.open(tmp_path / "strict" / "00000.tar")]
    assert (
        run(
            tiny_models,
            shards,
            tmp_path / "annotate",
            "--set",
            "filter.threshold=0.99",
            "--set",
            "filter.policy=score_only",
        )
        == 0
    )
    assert {r["status"] for r in rows(tmp_path / "annotate")} == {"kept"}
    assert run(tiny_models, shards, tmp_path / "all", "--set", "filter.policy=all", "--set", "filter.threshold=0") == 0
    for r in rows(tmp_path / "all"):
        assert len(r["kept_texts"]) == len(r["synthetic_texts"]) + (r["web_text"] is not None)


def test_reruns_are_byte_identical_and_resume_skips_done_shards(tiny_models, shards, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run(tiny_models, shards, first) == 0
    assert run(tiny_models, shards, second) == 0
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # A rerun skips finished shards: a changed setting has no effect without --overwrite.
    stamp = (first / "00000_stats.json").read_bytes()
    assert run(tiny_models, shards, first, "--set", "filter.threshold=0.99") == 0
    assert (first / "00000_stats.json").read_bytes() == stamp
    assert run(tiny_models, shards, first, "--set", "filter.threshold=0.99", "--overwrite") == 0
    assert {r["status"] for r in rows(first)} == {"below_threshold"}


def test_a_different_seed_samples_different_captions(tiny_models, shards, tmp_path):
    assert run(tiny_models, shards, tmp_path / "a") == 0
    assert run(tiny_models, shards, tmp_path / "b", "--set", "seed=1") == 0
    texts = lambda out: [r["synthetic_texts"] for r in rows(out)]  # noqa: E731
    assert texts(tmp_path / "a") != texts(tmp_path / "b")


def test_beam_metrics_count_samples(tiny_models, shards, tmp_path):
    config = load_config(
        "demo",
        overrides=[
            f"captioner.model={tiny_models[0]}",
            f"filter.model={tiny_models[1]}",
            "captioner.max_length=4",
            "captioner.min_length=1",
            "filter.threshold=0",
        ],
    )
    p = beam.Pipeline("FnApiRunner")
    job.build(p, config, match_shards(str(shards / "*.tar")), str(tmp_path / "out"), overwrite=False, threads=1)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    assert counters["samples_in"] == 12 and counters["shards_done"] == 2
    assert counters["kept_web"] + counters["kept_synthetic"] == 12


def test_unreadable_shard_is_recorded_and_others_finish(tiny_models, shards, tmp_path):
    (shards / "00002.tar").write_bytes(b"<html>502 Bad Gateway</html>" * 40)
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    stats = json.loads((out / "00002_stats.json").read_text())
    assert stats["failed_shards"] == ["00002"] and "not a tar" in stats["error"]
    assert not (out / "00002.tar").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["failed_shards"] == ["00002"] and report["totals"]["input"] == 12
    assert run(tiny_models, shards, tmp_path / "strict", "--strict") == 1


@pytest.mark.parametrize(
    "beam_args, threads_set, expected",
    [
        (["--runner=FnApiRunner"], 0, 4),
        (["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"], 0, 2),
        (["--runner=FnApiRunner", "--direct_num_workers=8", "--direct_running_mode=multi_processing"], 0, 1),
        (["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"], 3, 3),
        (["--runner=DataflowRunner"], 0, 0),
    ],
)
def test_torch_threads_share_the_usable_cores_among_worker_processes(monkeypatch, beam_args, threads_set, expected):
    # Four usable cores out of, say, 64 on the host: the affinity mask is what the process may run on.
    monkeypatch.setattr(job.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(job.os, "cpu_count", lambda: 64)
    config = load_config("demo", overrides=[f"runtime.threads={threads_set}"])
    assert job.torch_threads(config, job.PipelineOptions(beam_args)) == expected

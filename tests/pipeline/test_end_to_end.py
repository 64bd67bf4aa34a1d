"""The real entry point over tiny shards and tiny BLIP models on Beam's FnApiRunner, checked against the contract."""

import json
import os
import re
import tarfile
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from apache_beam.metrics.metric import MetricsFilter

from capfilt.pipeline import beam_job as job
from capfilt.pipeline.config import load_config
from capfilt.pipeline.cores import decode_threads
from capfilt.pipeline.shard.reader import match_shards
from tests.helpers import rows, run, sample_members, write_shard


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
    # A rerun skips finished shards (a changed setting is refused: see test_wild); --overwrite redoes them.
    stamp = (first / "00000_stats.json").read_bytes()
    assert run(tiny_models, shards, first) == 0
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
    assert (out / "00002.tar").stat().st_size > 0 and pq.read_table(out / "00002.parquet").num_rows == 0
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
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    config = load_config("demo", overrides=[f"runtime.threads={threads_set}"])
    assert job.torch_threads(config, job.PipelineOptions(beam_args)) == expected


@pytest.mark.parametrize(
    "configured, device, process_cores, expected",
    [(0, "cpu", 2, 1), (0, "cuda", 0, 4), (0, "cuda:1", 2, 2), (3, "cpu", 2, 3), (3, "cuda", 0, 3)],
)
def test_decode_threads_use_the_cores_only_where_a_gpu_runs_the_models(
    monkeypatch, configured, device, process_cores, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert decode_threads(configured, device, process_cores) == expected


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _candidates(row: dict) -> list[tuple[str, float]]:
    web = [(row["web_text"], row["web_score"])] if row["web_score"] is not None else []
    return web + list(zip(row["synthetic_texts"], row["synthetic_scores"]))


def test_policy_all_keeps_exactly_the_candidates_at_or_over_a_splitting_threshold(tiny_models, shards, tmp_path):
    scored = tmp_path / "scored"
    assert run(tiny_models, shards, scored, "--set", "filter.policy=score_only") == 0
    best = sorted(max(score for _, score in _candidates(row)) for row in rows(scored))
    threshold = best[len(best) // 2]  # the median sample's best score: about half the samples keep something
    out = tmp_path / "all"
    assert run(tiny_models, shards, out, "--set", "filter.policy=all", "--set", f"filter.threshold={threshold!r}") == 0
    members = {**_tar_members(out / "00000.tar"), **_tar_members(out / "00001.tar")}
    statuses, partly_kept = set(), 0
    for row in rows(out):
        passing = [(text, score) for text, score in _candidates(row) if score >= threshold]
        statuses.add(row["status"])
        if not passing:
            assert row["status"] == "below_threshold" and f"{row['key']}.txt" not in members
            continue
        top = max(_candidates(row), key=lambda c: c[1])  # the first of equal scores: web first
        assert row["status"] == "kept" and row["kept_texts"] == [text for text, _ in passing]
        partly_kept += len(passing) < len(_candidates(row))
        assert members[f"{row['key']}.txt"].decode() == top[0] == row["caption"]
        record = json.loads(members[f"{row['key']}.json"])["capfilt"]
        assert [c["text"] for c in record["kept"]] == [text for text, _ in passing]
        assert all(c["score"] >= round(threshold, 6) - 1e-6 for c in record["kept"])
    assert statuses == {"kept", "below_threshold"} and partly_kept, "the threshold must split samples and candidates"


def test_web_margin_from_config_decides_between_web_and_synthetic(tiny_models, shards, tmp_path):
    scored = tmp_path / "scored"
    assert run(tiny_models, shards, scored, "--set", "filter.policy=score_only") == 0
    gaps = [
        max(r["synthetic_scores"]) - r["web_score"]
        for r in rows(scored)
        if r["web_score"] is not None and max(r["synthetic_scores"]) > r["web_score"]
    ]
    assert gaps, "some web caption must be outscored by a synthetic one for this test to mean anything"
    plain, margin = tmp_path / "plain", tmp_path / "margin"
    assert run(tiny_models, shards, plain) == 0
    assert run(tiny_models, shards, margin, "--set", f"filter.web_margin={max(gaps) + 1e-6!r}") == 0
    outscored = {
        r["key"] for r in rows(scored) if r["web_score"] is not None and r["web_score"] < max(r["synthetic_scores"])
    }
    for row in rows(plain):
        assert row["source"] == (
            "synthetic" if row["key"] in outscored else ("web" if row["web_text"] else "synthetic")
        )
    for row in rows(margin):
        assert row["source"] == ("web" if row["web_text"] else "synthetic"), row["key"]
    assert json.loads((margin / "report.json").read_text())["config"]["filter"]["web_margin"] == max(gaps) + 1e-6


def test_no_synthetic_captions_drops_uncaptioned_samples_as_no_caption(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", "captioner.num_captions=0") == 0
    for row in rows(out):
        assert row["synthetic_texts"] == []
        assert row["status"] == ("kept" if row["web_text"] else "no_caption"), row["key"]
    assert json.loads((out / "report.json").read_text())["totals"]["dropped"] == {"no_caption": 2}


def test_duplicates_and_oversized_members_are_recorded_and_counted(tiny_models, tmp_path):
    members = sample_members("a") + sample_members("dup") + sample_members("b") + sample_members("dup")
    members += sample_members("c") + [("c.txt", b"a second caption")]
    members += sample_members("big") + [("big.npy", b"\0" * 10_000)]
    write_shard(tmp_path / "in" / "00000.tar", members)
    out = tmp_path / "out"
    assert run(tiny_models, tmp_path / "in", out, "--set", "decode.max_member_bytes=4096") == 0
    by_key = [(r["key"], r["status"], r["error"]) for r in rows(out)]
    assert [(k, s) for k, s, _ in by_key] == [
        ("a", "kept"),
        ("dup", "kept"),
        ("b", "kept"),
        ("dup", "duplicate_key"),
        ("c", "kept"),
        ("big", "kept"),
    ]
    errors = {k: e for k, _, e in by_key}
    assert errors["c"] == "duplicate_member_ignored: c.txt"
    assert errors["big"].startswith("member_too_large: big.npy (10000 bytes")
    stats = json.loads((out / "00000_stats.json").read_text())
    assert stats["dropped"] == {"duplicate_key": 1}
    assert stats["errors"] == {"duplicate_member_ignored": 1, "member_too_large": 1}
    totals = json.loads((out / "report.json").read_text())["totals"]
    assert totals["sample_errors"] == stats["errors"] and totals["dropped"] == stats["dropped"]
    # The first of two captions is the web caption; the ignored one never reaches the output.
    assert _tar_members(out / "00000.tar")["c.json"] and b"a second caption" not in (out / "00000.tar").read_bytes()


def test_parquet_columns_are_the_ones_the_readme_documents(tiny_models, shards, tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    paragraph = readme[readme.index("Parquet columns:") :].split("\n\n", 1)[0]
    documented = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", paragraph))
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    assert pq.read_schema(out / "00000.parquet").names == documented


def test_tars_are_pax_with_root_owner_and_keep_unicode_keys(tiny_models, tmp_path):
    write_shard(tmp_path / "in" / "00000.tar", sample_members("plain") + sample_members("ünïcödé_キー"))
    out = tmp_path / "out"
    assert run(tiny_models, tmp_path / "in", out) == 0
    data = (out / "00000.tar").read_bytes()
    assert data[257:265] == b"ustar\x0000"  # POSIX ustar magic, as PAX writes it (GNU writes "ustar  \0")
    with tarfile.open(out / "00000.tar") as tar:
        members = tar.getmembers()
    assert {m.name for m in members} >= {"ünïcödé_キー.jpg", "ünïcödé_キー.txt", "ünïcödé_キー.json"}
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime, m.mode) == (0, 0, "", "", 0, 0o644) for m in members)
    # A non-ASCII name travels in a PAX extended header (type 'x') before its member.
    assert any(data[i + 156 : i + 157] == b"x" for i in range(0, len(data), 512) if data[i + 257 : i + 262] == b"ustar")


def test_kept_sample_without_a_web_caption_records_null_web_text(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    record = json.loads(_tar_members(out / "00000.tar")["s0_003.json"])["capfilt"]
    assert record["web"] == {"text": None, "score": None}
    assert record["source"] == "synthetic" and record["caption"] in [s["text"] for s in record["synthetic"]]

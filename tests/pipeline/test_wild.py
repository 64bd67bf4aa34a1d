"""Shards from the wild: img2dataset-style samples with extra members, mixed image formats, 0-byte and HTML files
named .tar, an output folder that is the input's. Each outcome is what a user of those shards relies on."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from capfilt.cli import main
from tests.helpers import encode, picture, rows, run, run_argv, write_shard

HTML_404 = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def img2dataset_sample(key: str, fmt: str, index: int) -> list[tuple[str, bytes]]:
    """A sample as img2dataset and most training sets write it: image, txt, json repeating the caption, plus the
    extra fields users add (a class label, an embedding, a second caption, a caption in another language)."""
    caption = f"a red square number {index}"
    meta = {"url": f"https://example.com/{key}.{fmt}", "key": key, "caption": caption, "status": "success"}
    image = encode(picture(), {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt])
    return [
        (f"{key}.{fmt}", image),
        (f"{key}.txt", caption.encode()),
        (f"{key}.json", json.dumps(meta).encode()),
        (f"{key}.cls", str(index % 7).encode()),
        (f"{key}.npy", npy(np.arange(8, dtype=np.float32) * index)),
        (f"{key}.caption", f"alt {index}".encode()),
        (f"{key}.de.txt", f"ein rotes Quadrat {index}".encode()),
    ]


@pytest.fixture(scope="module")
def wild(tiny_models, tmp_path_factory):
    """One run over: an img2dataset-style shard of mixed formats, a 0-byte .tar, a short HTML page named .tar and
    a longer one. Returns (exit code, input folder, output folder, the input members by key, input digests, the
    seconds the whole run took as this test saw it)."""
    root = tmp_path_factory.mktemp("wild")
    inp = root / "in"
    members = []
    for i, fmt in enumerate(["jpg", "png", "webp", "jpg", "png", "jpg"]):
        members += img2dataset_sample(f"{i:09d}", fmt, i)
    write_shard(inp / "00000.tar", members)
    (inp / "00001.tar").write_bytes(b"")
    (inp / "00002.tar").write_bytes(HTML_404)  # shorter than one tar header
    (inp / "00003.tar").write_bytes(HTML_404 * 20)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inp.iterdir()}
    by_key: dict[str, dict[str, bytes]] = {}
    for name, data in members:
        key, _, ext = name.partition(".")
        by_key.setdefault(key, {})[ext] = data
    started = time.monotonic()
    code = run(tiny_models, inp, root / "out")
    return code, inp, root / "out", by_key, digests, time.monotonic() - started


def tar_members(path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return samples


def test_every_member_of_a_kept_sample_travels_byte_for_byte(wild):
    code, _, out, by_key, _, _ = wild
    assert code == 0
    written = tar_members(out / "00000.tar")
    kept = [r["key"] for r in pq.read_table(out / "00000.parquet").to_pylist() if r["status"] == "kept"]
    assert kept == list(by_key)  # threshold 0 keeps every sample
    for key in kept:
        assert set(written[key]) == set(by_key[key])
        for ext, data in by_key[key].items():
            if ext not in ("txt", "json"):
                assert written[key][ext] == data, f"{key}.{ext} changed"


def test_img2dataset_caption_field_is_the_chosen_caption_and_the_original_is_kept(wild):
    _, _, out, by_key, _, _ = wild
    written = tar_members(out / "00000.tar")
    for key, original in by_key.items():
        meta = json.loads(written[key]["json"])
        chosen = written[key]["txt"].decode()
        assert meta["caption"] == chosen == meta["capfilt"]["caption"]
        assert meta["capfilt"]["web"]["text"] == json.loads(original["json"])["caption"]
        assert meta["url"] == json.loads(original["json"])["url"]


def test_rows_list_every_member_read(wild):
    _, _, out, by_key, _, _ = wild
    for row in pq.read_table(out / "00000.parquet").to_pylist():
        assert sorted(row["members"]) == sorted(by_key[row["key"]])


@pytest.mark.parametrize(
    ("shard", "why"),
    [("00001", "empty file (0 bytes)"), ("00002", "shorter than one 512-byte tar header"), ("00003", "not a tar")],
)
def test_a_file_that_is_not_a_tar_is_a_failed_shard_with_all_three_files(wild, shard, why):
    _, _, out, _, _, _ = wild
    stats = json.loads((out / f"{shard}_stats.json").read_text())
    assert stats["failed_shards"] == [shard] and why in stats["error"]
    assert pq.read_table(out / f"{shard}.parquet").num_rows == 0
    with tarfile.open(out / f"{shard}.tar") as tar:
        assert tar.getmembers() == []
    assert json.loads((out / "sizes.json").read_text())[f"{shard}.tar"] == 0
    assert json.loads((out / "report.json").read_text())["totals"]["failed_shards"] == ["00001", "00002", "00003"]


def test_stats_carry_img2dataset_keys(wild):
    _, _, out, _, _, run_seconds = wild
    stats = json.loads((out / "00000_stats.json").read_text())
    assert stats["count"] == stats["input"] == 6
    assert stats["successes"] == stats["kept"] == 6
    assert stats["status_dict"] == {"success": 6}
    # img2dataset's duration is the seconds spent on the shard: the same figure as capfilt's own and the report's
    # table, some part of the run that made it (not zero, not milliseconds, not a clock reading).
    assert stats["duration"] == round(stats["seconds"], 3) == stats["per_shard"]["00000"]["seconds"]
    assert 0 < stats["duration"] < run_seconds
    assert stats["fingerprint"] and stats["settings"]["captioner"]["num_captions"] == 3


def test_sizes_json_counts_the_kept_samples_of_every_output_tar(wild):
    _, _, out, _, _, _ = wild
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {
        f"{name}.tar": len(tar_members(out / f"{name}.tar")) for name in ("00000", "00001", "00002", "00003")
    }


def test_the_input_is_never_written(wild):
    _, inp, _, _, digests, _ = wild
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inp.iterdir()} == digests


@pytest.mark.parametrize("where", ["same", "parent"])
def test_an_output_folder_holding_an_input_shard_is_refused(tiny_models, tmp_path, capsys, where):
    inp = tmp_path / "data" / "shards"
    write_shard(inp / "00000.tar", img2dataset_sample("a", "jpg", 1))
    before = (inp / "00000.tar").read_bytes()
    out = inp if where == "same" else tmp_path / "data"
    assert main(run_argv(tiny_models, str(inp / "*.tar"), out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the input shard" in err
    assert (inp / "00000.tar").read_bytes() == before and sorted(p.name for p in inp.iterdir()) == ["00000.tar"]


def test_strict_fails_on_failed_or_truncated_shards(tiny_models, tmp_path):
    inp = tmp_path / "in"
    write_shard(inp / "00000.tar", img2dataset_sample("a", "jpg", 1) + img2dataset_sample("b", "jpg", 2))
    assert run(tiny_models, inp, tmp_path / "ok", "--strict") == 0
    data = (inp / "00000.tar").read_bytes()
    (inp / "00000.tar").write_bytes(data[: len(data) * 2 // 3])
    assert run(tiny_models, inp, tmp_path / "cut") == 0
    assert run(tiny_models, inp, tmp_path / "cut_strict", "--strict") == 1
    (inp / "00000.tar").write_bytes(b"")
    assert run(tiny_models, inp, tmp_path / "empty_strict", "--strict") == 1


def test_a_resume_with_other_settings_is_refused_naming_the_setting(tiny_models, shards, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    capsys.readouterr()
    assert run(tiny_models, shards, out) == 0
    assert "2 shard(s) already complete there, skipped" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert run(tiny_models, shards, out, "--set", "captioner.top_p=0.5") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "captioner.top_p 0.9 -> 0.5" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before
    assert run(tiny_models, shards, out, "--set", "captioner.top_p=0.5", "--overwrite") == 0
    assert all(r["status"] == "kept" for r in rows(out))

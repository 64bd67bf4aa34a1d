"""`demo-data --duplicates`: copies of samples injected into other shards with their ground truth, and `eval`'s
deduplication figures on a real score → `select --dedup exact` chain, checked against numbers the test works out
from the copies' json and the media bytes itself."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import re
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from capfilt.cli import main
from capfilt.demo import world
from capfilt.demo.evaluate import deduplication_rows

MEDIA = ("jpg", "png", "mp4", "webm")


def _samples(paths) -> dict[str, tuple[int, dict[str, bytes]]]:
    """Every sample of the tars by key: ``(shard index, {extension: bytes})``, in tar order."""
    samples: dict[str, tuple[int, dict[str, bytes]]] = {}
    for shard, path in enumerate(paths):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, (shard, {}))[1][ext] = tar.extractfile(member).read()
    return samples


def _media(members: dict[str, bytes]) -> tuple[str, bytes]:
    (found,) = [(ext, data) for ext, data in members.items() if ext in MEDIA]
    return found


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _digests(paths) -> list[str]:
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_copies_land_in_other_shards_with_their_ground_truth(tmp_path):
    paths = world.write_demo_shards(str(tmp_path / "dups"), shards=3, samples_per_shard=40, seed=2, duplicates=0.5)
    plain = _samples(world.write_demo_shards(str(tmp_path / "plain"), shards=3, samples_per_shard=40, seed=2))
    samples = _samples(paths)
    copies = {key: s for key, s in samples.items() if "duplicate" in json.loads(s[1]["json"])}
    # The originals are the same samples, byte for byte, as without copies: the copies draw from a stream of their own.
    assert {k: s for k, s in samples.items() if k not in copies} == plain
    assert len({json.loads(m["json"])["duplicate"]["of"] for _, m in copies.values()}) == round(0.5 * 120)
    kinds, captions = collections.Counter(), collections.Counter()
    for key, (shard, members) in copies.items():
        meta = json.loads(members["json"])
        of, kind = meta["duplicate"]["of"], meta["duplicate"]["kind"]
        assert re.fullmatch(rf"{shard:05d}_dup\d{{6}}", key)
        source_shard, original = samples[of]
        assert source_shard != shard  # another shard
        truth = json.loads(original["json"])
        assert set(meta) == {"gt_caption", "noise", "url", "duplicate"} and meta["gt_caption"] == truth["gt_caption"]
        assert meta["url"] != truth["url"] and key in meta["url"]
        (ext, data), (original_ext, original_data) = _media(members), _media(original)
        image, original_image = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(original_data))
        if kind == "bytes":
            assert (ext, data) == (original_ext, original_data)
        else:
            assert ext == "jpg" and data != original_data
            if kind == "reencode":
                assert image.size == original_image.size
            else:
                assert kind == "resize"
                assert all(0.5 * o - 1 <= c <= 0.9 * o + 1 for c, o in zip(image.size, original_image.size))
        kinds[kind] += 1
        # The web caption is the original's, or another of the same scene whose noise kind the json names.
        text = members.get("txt")
        same = text == original.get("txt") and meta["noise"] == truth["noise"]
        captions["same" if same else "other"] += 1
        if meta["noise"] == "missing":
            assert text is None
        elif meta["noise"] == "correct":
            assert world.normalise(text.decode()) == world.normalise(meta["gt_caption"])
        elif meta["noise"] != "empty":
            assert world.normalise(text.decode()) != world.normalise(meta["gt_caption"])
    assert set(kinds) == set(world.DUPLICATE_KINDS) and min(kinds.values()) >= 10, kinds
    assert min(captions.values()) >= 10, captions


def test_one_shard_takes_its_own_copies_and_clips_are_copied_byte_for_byte(tmp_path):
    samples = _samples(world.write_demo_shards(str(tmp_path / "one"), shards=1, samples_per_shard=20, duplicates=0.3))
    copies = [json.loads(m["json"])["duplicate"]["of"] for _, m in samples.values() if b"duplicate" in m["json"]]
    assert len(set(copies)) == 6 and all(of.startswith("00000_") for of in copies)
    clips = _samples(world.write_demo_shards(str(tmp_path / "clips"), 2, 3, seed=1, video=True, duplicates=1.0))
    copied = [(m, json.loads(m["json"])["duplicate"]) for _, m in clips.values() if b"duplicate" in m["json"]]
    assert len(copied) >= 6
    for members, copy in copied:
        assert copy["kind"] == "bytes" and _media(members) == _media(clips[copy["of"]][1])


def test_the_same_arguments_give_the_same_tars_and_no_copies_the_tars_of_before(tmp_path):
    def demo_data(name, *extra):
        argv = ["demo-data", "--output", str(tmp_path / name), "--shards", "2", "--samples-per-shard", "10", *extra]
        assert main(argv) == 0
        return sorted((tmp_path / name).iterdir())

    before = demo_data("before")
    assert _digests(demo_data("zero", "--duplicates", "0")) == _digests(before)
    copied = demo_data("copied", "--duplicates", "0.3")
    assert [p.name for p in copied] == ["00000.tar", "00001.tar"]  # no temporary file left behind
    assert _digests(demo_data("again", "--duplicates", "0.3")) == _digests(copied) != _digests(before)


@pytest.mark.parametrize("fraction", ["1.5", "-0.1", "nan"])
def test_a_fraction_outside_0_1_is_refused_in_one_line(tmp_path, capsys, fraction):
    assert main(["demo-data", "--output", str(tmp_path / "out"), "--duplicates", fraction]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("capfilt: error: --duplicates must be a fraction within [0, 1]")
    assert not (tmp_path / "out").exists()


def _row(shard, key, status, duplicate_of=None, of=None, kind=None, caption="a small red circle on the left"):
    meta = {"noise": "correct"}
    if caption is not None:  # None: a sample without demo ground truth
        meta["gt_caption"] = f"{caption} on a green background"
    if of is not None:
        meta["duplicate"] = {"of": of, "kind": kind}
    return shard, {"key": key, "status": status, "duplicate_of": duplicate_of, "json": json.dumps(meta)}


def test_wrong_merges_and_groups_lost_are_counted_and_plain_output_has_no_figures():
    result = deduplication_rows(
        [
            _row("00000", "a", "kept"),
            _row("00001", "a_copy", "duplicate", "00000/b", of="a", kind="bytes"),  # merged into another group
            _row("00000", "b", "kept"),
            _row("00000", "c", "duplicate", "00000/a"),  # an original with no copy, lost to another group
            _row("00001", "d_copy", "no_caption", of="d", kind="resize"),  # never selectable
            _row("00000", "d", "kept"),
        ]
    )
    assert result["groups"] == 1 and result["copies"] == 1 and result["found"] == 0 and result["recall"] == 0.0
    assert result["per_kind"] == {"bytes": {"copies": 1, "found": 0, "recall": 0.0}}
    assert result["removed"] == 2 and result["wrong_merges"] == 2 and result["groups_removed"] == 1
    # Every sample has the one caption: both wrong merges joined renders of it, and it is still there.
    assert result["wrong_merges_same_description"] == 2
    assert result["descriptions"] == 1 and result["descriptions_lost"] == 0
    assert deduplication_rows([_row("00000", "a", "kept"), _row("00000", "b", "below_threshold")]) is None


def test_a_description_is_lost_only_when_every_sample_of_it_is_removed():
    square, cross = "a small blue square on the top", "a small blue cross on the top"
    result = deduplication_rows(
        [
            _row("00000", "a", "kept", caption=square),
            _row("00000", "b", "duplicate", "00000/a", caption=square),  # another render of a: nothing lost
            _row("00001", "c", "duplicate", "00000/a", caption=cross),  # the only cross, merged into a square
            _row("00001", "d", "below_threshold", caption="a large red circle on the left"),  # cut, not merged
        ]
    )
    assert result["wrong_merges"] == 2 and result["wrong_merges_same_description"] == 1
    assert result["groups_removed"] == 2
    assert result["descriptions"] == 3 and result["descriptions_lost"] == 1
    # A sample without ground truth, removed as a copy of one the output lacks: a wrong merge of no description.
    unknown = deduplication_rows([_row("00000", "a", "kept"), _row("00001", "x", "duplicate", "09/zz", caption=None)])
    assert unknown["wrong_merges"] == 1 and unknown["wrong_merges_same_description"] == 0
    assert unknown["descriptions"] == 1 and unknown["descriptions_lost"] == 0


def _ground_truth(input_dir) -> dict[str, dict]:
    """Each input sample by ``SHARD/KEY``: its origin (the key it copies, or its own), copy kind and media hash."""
    truth = {}
    for key, (shard, members) in _samples(sorted(input_dir.glob("*.tar"))).items():
        meta = json.loads(members["json"])
        copy = meta.get("duplicate", {"of": key, "kind": None})
        digest = hashlib.sha256(_media(members)[1]).hexdigest()
        truth[f"{shard:05d}/{key}"] = {"key": key, "origin": copy["of"], "kind": copy["kind"], "sha256": digest}
    return truth


def test_eval_reports_exact_dedup_finding_every_byte_copy_and_nothing_else(tmp_path, capsys, one_thread):
    inp, scored, selected = tmp_path / "in", tmp_path / "scored", tmp_path / "sel"
    argv = ["demo-data", "--output", str(inp), "--shards", "2", "--samples-per-shard", "24", "--duplicates", "0.2"]
    assert main(argv) == 0
    sets = ["filter.policy=score_only", "captioner.num_captions=2", "runtime.threads=1"]
    run = ["run", "demo", "--input", str(inp / "*.tar"), "--output", str(scored)]
    assert main([*run, *[a for s in sets for a in ("--set", s)]]) == 0
    assert main(["select", str(scored), "--output", str(selected), "--threshold", "0", "--dedup", "exact"]) == 0

    # What exact deduplication must do, from the copies' json and the media bytes: inside each origin group, the
    # selectable samples with the same bytes collapse to one; nothing merges across groups.
    truth = _ground_truth(inp)
    selectable = {f"{p.stem}/{r['key']}" for p in scored.glob("*.parquet") for r in rows_of(p) if r["status"] == "kept"}
    groups = collections.defaultdict(list)
    for name in selectable:
        groups[truth[name]["origin"]].append(truth[name])
    copies = sum(len(g) - 1 for g in groups.values())
    same_bytes = sum(len(g) - len({m["sha256"] for m in g}) for g in groups.values())
    byte_copies = sum(m["kind"] == "bytes" and any(o["kind"] is None for o in g) for g in groups.values() for m in g)
    assert byte_copies > 0 and copies > same_bytes  # the chain has byte copies to find, and others exact cannot

    removed = [r for p in sorted(selected.glob("*.parquet")) for r in rows_of(p) if r["status"] == "duplicate"]
    assert len(removed) == same_bytes
    by_key = {m["key"]: m for m in truth.values()}
    for row in removed:
        kept = truth[row["duplicate_of"]]
        assert kept["origin"] == by_key[row["key"]]["origin"] and kept["sha256"] == by_key[row["key"]]["sha256"]

    capsys.readouterr()
    assert main(["eval", str(selected)]) == 0
    printed = capsys.readouterr().out
    assert "dedup recall" in printed and "wrong merges           0" in printed
    dedup = json.loads((selected / "report.json").read_text())["deduplication"]
    assert dedup["per_kind"]["bytes"] == {"copies": byte_copies, "found": byte_copies, "recall": 1.0}
    assert (dedup["copies"], dedup["found"], dedup["removed"]) == (copies, same_bytes, same_bytes)
    assert dedup["recall"] == pytest.approx(same_bytes / copies)
    assert dedup["wrong_merges"] == 0 and dedup["groups_removed"] == 0
    page = (selected / "report.html").read_text()
    assert f"dedup recall ({same_bytes} of {copies} copies)" in page
    # The scored folder removed nothing: its figures say so, and the usual evaluation is still there.
    assert main(["eval", str(scored)]) == 0
    assert "kept caption accuracy" in capsys.readouterr().out
    scored_dedup = json.loads((scored / "report.json").read_text())["deduplication"]
    assert scored_dedup["removed"] == scored_dedup["found"] == 0 and scored_dedup["copies"] == copies

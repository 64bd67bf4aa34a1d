"""Every kind of damaged, odd or hostile input gets its recorded outcome, and nothing crashes the run."""

import collections
import json
import tarfile

import pyarrow.parquet as pq

from capfilt.pipeline.reasons import NOTES
from capfilt.pipeline.shard.decode import open_image
from tests.helpers import UNICODE, encode, exif_rotated_jpeg, picture


def test_run_finishes_and_records_the_unreadable_shard(messy_run):
    code, out, _ = messy_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["failed_shards"] == ["00004"]
    assert report["totals"]["truncated_shards"] == ["00002"]


def test_each_messy_sample_gets_its_outcome(messy_run):
    _, out, expected = messy_run
    rows = {r["key"]: r for r in pq.read_table(out / "00000.parquet").to_pylist()}
    assert set(rows) == set(expected)
    for key, (status, fragment) in expected.items():
        assert rows[key]["status"] == status, key
        if fragment:
            assert fragment in rows[key]["error"], (key, rows[key]["error"])
        else:
            assert rows[key]["error"] == "", (key, rows[key]["error"])
    stats = json.loads((out / "00000_stats.json").read_text())
    statuses = collections.Counter(status for status, _ in expected.values())
    assert stats["input"] == len(expected) == len(rows)
    assert stats["kept"] == statuses.pop("kept") and stats["dropped"] == dict(statuses)
    # Each note on a row is counted once in the stats, whether the sample was kept or dropped.
    notes = collections.Counter(
        part.split(":")[0] for r in rows.values() for part in r["error"].split("; ") if part.split(":")[0] in NOTES
    )
    assert stats["errors"] == dict(notes) and notes["link_member_ignored"] == 2
    assert rows["unicode_txt"]["web_text"] == UNICODE
    assert rows["huge_txt"]["web_score"] is not None and len(rows["huge_txt"]["web_text"]) > 1_000_000
    assert rows["no_txt"]["source"] == "synthetic" and rows["latin1_txt"]["web_text"] is None


def test_hostile_members_never_reach_the_output(messy_run):
    _, out, _ = messy_run
    with tarfile.open(out / "00000.tar") as tar:
        members = tar.getmembers()
    assert all(m.isfile() for m in members)
    names = [m.name for m in members]
    assert not [n for n in names if n.startswith("/") or ".." in n.split("/")]
    assert not [n for n in names if n.startswith(("symlink", "hardlink"))]
    assert "dir.v1/sub.x/key.jpg" in names
    assert not (out.parent / "escape.jpg").exists() and not (out / "escape.jpg").exists()


def test_odd_archives(messy_run):
    _, out, _ = messy_run
    gz = {r["key"]: r["status"] for r in pq.read_table(out / "00001.parquet").to_pylist()}
    assert gz == {"g1": "kept", "g2": "kept"}
    cut = pq.read_table(out / "00002.parquet").to_pylist()
    assert [r["status"] for r in cut[:-1]] == ["kept"] * (len(cut) - 1) and cut[-1]["status"] == "truncated"
    assert len(cut) >= 2
    empty = json.loads((out / "00003_stats.json").read_text())
    assert empty["input"] == 0 and pq.read_table(out / "00003.parquet").num_rows == 0
    failed = json.loads((out / "00004_stats.json").read_text())
    assert "not a tar archive" in failed["error"] and pq.read_table(out / "00004.parquet").num_rows == 0


def test_exif_orientation_is_applied_for_the_models():
    image, _, _ = open_image(exif_rotated_jpeg(), 10**8)
    assert image.size == (20, 40) and image.mode == "RGB"


def test_pixel_limit_refuses_before_decoding():
    image, reason, error = open_image(encode(picture((300, 300)), "PNG"), max_pixels=50_000)
    assert image is None and reason == "image_too_large" and "300x300" in error


def test_large_jpegs_decode_at_reduced_scale_but_never_below_the_draft_size():
    photo = encode(picture((2000, 1500)), "JPEG")
    image, _, _ = open_image(photo, 10**8, draft_size=512)
    assert image.size == (1000, 750)
    assert open_image(photo, 10**8)[0].size == (2000, 1500)
    small = encode(picture((300, 200)), "JPEG")
    assert open_image(small, 10**8, draft_size=512)[0].size == (300, 200)

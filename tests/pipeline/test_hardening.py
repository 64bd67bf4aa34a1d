"""Every kind of damaged, odd or hostile input gets its recorded outcome, and nothing crashes the run."""

import gzip
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from capfilt.pipeline.shard.decode import open_image
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter

from tests.messy_corpus import broken, decodable, encode, exif_rotated_jpeg, picture
from tests.test_pipeline import run

CAPTION = b"a red square"
JSON = b'{"url": "https://example.com/x.jpg"}'
UNICODE = "一只红色的猫 🐱 قطة حمراء"


def messy_members():
    """(members, links, expected) for one shard: expected maps key -> (status, error fragment)."""
    members, expected = [], {}
    for key, (ext, data) in decodable().items():
        members += [(f"{key}.{ext}", data), (f"{key}.txt", CAPTION), (f"{key}.json", JSON)]
        expected[key] = ("kept", "")
    for key, (ext, data, status, fragment) in broken().items():
        members += [(f"{key}.{ext}", data), (f"{key}.txt", CAPTION)]
        expected[key] = (status, fragment)
    image = encode(picture(), "JPEG")
    odd_text = {
        "no_txt": (None, "kept", "no_txt"),
        "blank_txt": (b"  \n\t ", "kept", "blank_txt"),
        "latin1_txt": ("café rouge".encode("latin-1"), "kept", "txt_not_utf8"),
        "huge_txt": (b"red " * 262_144, "kept", ""),
        "unicode_txt": (UNICODE.encode(), "kept", ""),
    }
    for key, (text, status, fragment) in odd_text.items():
        members.append((f"{key}.jpg", image))
        if text is not None:
            members.append((f"{key}.txt", text))
        expected[key] = (status, fragment)
    members += [("bad_json.jpg", image), ("bad_json.json", b"{not json")]
    members += [("list_json.jpg", image), ("list_json.json", b"[1, 2]")]
    members += [("no_image.txt", CAPTION), ("no_image.json", JSON)]
    members += [("dir.v1/sub.x/key.jpg", image), ("dir.v1/sub.x/key.txt", CAPTION)]
    members += [("../escape.jpg", image), ("../escape.txt", CAPTION), ("/abs/evil.jpg", image)]
    expected.update(
        {
            "bad_json": ("invalid_json", "json member unreadable"),
            "list_json": ("invalid_json", "not an object"),
            "no_image": ("no_image", "no image member"),
            "dir.v1/sub.x/key": ("kept", ""),
            "../escape": ("unsafe_path", "leaves the archive"),
            "/abs/evil": ("unsafe_path", "leaves the archive"),
            "symlink": ("no_image", "link_member_ignored"),
            "hardlink": ("no_image", "link_member_ignored"),
        }
    )
    links = [
        ("symlink.jpg", tarfile.SYMTYPE, "/etc/passwd"),
        ("symlink.txt", None, CAPTION),
        ("hardlink.jpg", tarfile.LNKTYPE, "jpeg_baseline.jpg"),
        ("folder", tarfile.DIRTYPE, ""),
    ]
    return members, links, expected


def write_tar(path, members, links=()):
    with open(path, "wb") as handle, DeterministicTarWriter(handle) as tar:
        for name, data in members:
            tar.add(name, data)
        for name, kind, target in links:
            if kind is None:
                tar.add(name, target)
                continue
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar._tar.addfile(info)


@pytest.fixture(scope="module")
def messy_run(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    inp = root / "in"
    inp.mkdir()
    members, links, expected = messy_members()
    write_tar(inp / "00000.tar", members, links)
    ordinary = [("g1.jpg", encode(picture(), "JPEG")), ("g1.txt", CAPTION), ("g2.png", encode(picture(), "PNG"))]
    write_tar(inp / "plain", ordinary)
    (inp / "00001.tar.gz").write_bytes(gzip.compress((inp / "plain").read_bytes(), mtime=0))
    (inp / "plain").unlink()
    body = [
        (f"t{i}.{ext}", encode(picture((64, 64)), "BMP") if ext == "bmp" else CAPTION)
        for i in range(4)
        for ext in ("bmp", "txt")
    ]
    write_tar(inp / "00002.tar", body)
    data = (inp / "00002.tar").read_bytes()
    (inp / "00002.tar").write_bytes(data[: int(len(data) * 0.6)])
    write_tar(inp / "00003.tar", [])
    (inp / "00004.tar").write_bytes(b"<html><body>503 Service Unavailable</body></html>\n" * 30)
    out = root / "out"
    code = run(tiny_models, inp, out, "--set", "filter.policy=score_only", pattern="*")
    return code, out, expected


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
        assert fragment in rows[key]["error"], (key, rows[key]["error"])
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
    assert "not a tar archive" in failed["error"] and not (out / "00004.tar").exists()


def test_exif_orientation_is_applied_for_the_models():
    image, _, _ = open_image(exif_rotated_jpeg(), 10**8)
    assert image.size == (20, 40) and image.mode == "RGB"


def test_pixel_limit_refuses_before_decoding():
    image, reason, error = open_image(encode(picture((300, 300)), "PNG"), max_pixels=50_000)
    assert image is None and reason == "image_too_large" and "300x300" in error


def test_weights_load_only_from_safetensors(tiny_models, tmp_path):
    from capfilt.models.loading import load_blip
    from transformers import BlipForImageTextRetrieval

    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    source = __import__("pathlib").Path(tiny_models[1])
    for item in source.iterdir():
        if item.suffix != ".safetensors":
            (model_dir / item.name).write_bytes(item.read_bytes())
    (model_dir / "pytorch_model.bin").write_bytes(b"a pickle that must never be unpickled")
    with pytest.raises(OSError):
        load_blip(BlipForImageTextRetrieval, str(model_dir))


def test_large_jpegs_decode_at_reduced_scale_but_never_below_the_draft_size():
    photo = encode(picture((2000, 1500)), "JPEG")
    image, _, _ = open_image(photo, 10**8, draft_size=512)
    assert image.size == (1000, 750)
    assert open_image(photo, 10**8)[0].size == (2000, 1500)
    small = encode(picture((300, 200)), "JPEG")
    assert open_image(small, 10**8, draft_size=512)[0].size == (300, 200)

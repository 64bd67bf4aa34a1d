"""Video samples through the real entry point (FnApiRunner, tiny models): a shard mixing images and clips of
every container, every kind of damage as a row with its reason, the clips' bytes untouched in the output,
byte-identical reruns and resume."""

import json
import random
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from capfilt.cli import main
from tests.helpers import (
    CAPTION,
    audio_only_mp4,
    clip_bytes,
    encode,
    grey_frames,
    image_bytes,
    no_decodable_frame,
    outputs,
    picture,
    rotated_mp4,
    rows,
    run_argv,
    webm_bytes,
    write_shard,
)

# Limits low enough that a few small clips cross them.
VIDEO_SETTINGS = [
    "video.frames=4",
    "video.max_pixels=20000",
    "video.max_seconds=10",
    "video.max_member_bytes=30000",
]


def noise_frames(count: int, size=(64, 48)) -> list[Image.Image]:
    rng = random.Random(0)
    return [Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)) for _ in range(count)]


def mixed_samples(tmp_path: Path) -> tuple[list, dict]:
    """(members, expected) for one shard: key -> (status, frames, a fragment of the error column)."""
    faststart = clip_bytes(grey_frames(30), path=tmp_path / "faststart.mp4")
    cut = faststart[: (faststart.index(b"mdat") + len(faststart)) // 2]
    media = {
        "img_jpg": ("jpg", image_bytes(), "kept", 1, ""),
        "clip_mp4": ("mp4", clip_bytes(grey_frames(30)), "kept", 4, ""),
        "clip_webm": ("webm", webm_bytes(grey_frames(30)), "kept", 4, ""),
        "clip_mkv": ("mkv", clip_bytes(grey_frames(30), "matroska"), "kept", 4, ""),
        "clip_avi": ("avi", clip_bytes(grey_frames(30), "avi", "mpeg4"), "kept", 4, ""),
        "clip_mov": ("mov", clip_bytes(grey_frames(30), "mov", "mpeg4"), "kept", 4, ""),
        "clip_vfr": ("mp4", clip_bytes(grey_frames(6), times=[0, 0.1, 0.15, 0.9, 1.0, 1.9]), "kept", 2, ""),
        "clip_rotated": ("mp4", rotated_mp4(clip_bytes(grey_frames(12))), "kept", 4, ""),
        "img_png": ("png", encode(picture(), "PNG"), "kept", 1, ""),
        "img_broken": ("jpg", b"<html>404</html>", "undecodable_image", None, "cannot identify"),
        "audio_only": ("mp4", audio_only_mp4(), "no_video_stream", None, "audio only"),
        "no_frames": ("mp4", no_decodable_frame(clip_bytes(grey_frames(30))), "undecodable_video", None, "no decod"),
        "cut_short": ("mp4", cut, "video_cut_short", None, "cut off"),
        "random_bytes": ("mp4", random.Random(2).randbytes(4000), "undecodable_video", None, "not a video"),
        "zero_bytes": ("webm", b"", "undecodable_video", None, "not a video"),
        "too_wide": ("mp4", clip_bytes(grey_frames(2, size=(320, 240))), "video_too_large", None, "(header)"),
        "too_long": ("mp4", clip_bytes(grey_frames(12), fps=1), "video_too_long", None, "12.0 s"),
        "too_many_bytes": ("mp4", clip_bytes(noise_frames(30)), "video_too_large", None, "max_member_bytes"),
    }
    members, expected = [], {}
    for key, (ext, data, status, frames, fragment) in media.items():
        members += [(f"{key}.{ext}", data), (f"{key}.txt", CAPTION), (f"{key}.json", b'{"url": "u"}')]
        expected[key] = (status, frames, fragment)
    # video2dataset may write a thumbnail beside a clip: it is a video sample, and the thumbnail travels.
    members += [("with_thumb.jpg", image_bytes()), ("with_thumb.mp4", clip_bytes(grey_frames(30)))]
    members += [("with_thumb.txt", CAPTION)]
    expected["with_thumb"] = ("kept", 4, "")
    return members, expected


@pytest.fixture(scope="module")
def video_input(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("video")
    members, expected = mixed_samples(root)
    write_shard(root / "in" / "00000.tar", members)
    second = [("b0.mp4", webm_bytes(grey_frames(20))), ("b0.txt", CAPTION), ("b1.jpg", image_bytes())]
    write_shard(root / "in" / "00001.tar", second)
    return root / "in", expected


def video_run(tiny_models, inp: Path, out: Path, *extra) -> int:
    sets = [item for setting in VIDEO_SETTINGS for item in ("--set", setting)]
    return main([*run_argv(tiny_models, str(inp / "*.tar"), out), *sets, *extra])


@pytest.fixture(scope="module")
def video_output(tiny_models, video_input, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video-out") / "out"
    assert video_run(tiny_models, video_input[0], out) == 0
    return out


def test_every_video_sample_gets_a_row_with_its_reason(video_output, video_input):
    table = {r["key"]: r for r in pq.read_table(video_output / "00000.parquet").to_pylist()}
    expected = video_input[1]
    assert set(table) == set(expected)
    for key, (status, frames, fragment) in expected.items():
        row = table[key]
        assert (row["status"], row["frames"]) == (status, frames), key
        assert fragment in row["error"], (key, row["error"])
        assert row["media"] == ("image" if key.startswith("img") else "video"), key
    assert table["clip_mp4"]["duration"] == pytest.approx(2.5, abs=1e-3)
    assert table["img_jpg"]["duration"] is None
    assert "member_too_large" in table["too_many_bytes"]["error"]
    stats = json.loads((video_output / "00000_stats.json").read_text())
    assert stats["input"] == len(expected) and stats["kept"] + sum(stats["dropped"].values()) == len(expected)


def test_kept_clips_travel_byte_for_byte_with_their_frames_on_record(video_output, video_input):
    with tarfile.open(video_input[0] / "00000.tar") as tar:
        original = {m.name: tar.extractfile(m).read() for m in tar}
    with tarfile.open(video_output / "00000.tar") as tar:
        written = {m.name: tar.extractfile(m).read() for m in tar}
    for name in ("clip_mp4.mp4", "clip_webm.webm", "clip_avi.avi", "with_thumb.mp4", "with_thumb.jpg"):
        assert written[name] == original[name], name
    record = json.loads(written["clip_mp4.json"])["capfilt"]
    assert record["video"]["frames"] == 4 and record["video"]["duration"] == pytest.approx(2.5, abs=1e-3)
    assert record["video"]["times"] == pytest.approx([3 / 12, 11 / 12, 18 / 12, 26 / 12], abs=1e-3)
    assert written["clip_mp4.txt"].decode() == record["caption"]
    assert "video" not in json.loads(written["img_jpg.json"])["capfilt"]


def test_webdataset_reads_the_cleaned_clips(video_output):
    dataset = wds.WebDataset(str(video_output / "{00000..00001}.tar"), shardshuffle=False, empty_check=False)
    clips = {s["__key__"]: s for s in dataset if "mp4" in s or "webm" in s}
    assert {"clip_mp4", "clip_vfr", "with_thumb", "b0"} <= set(clips)
    assert all(json.loads(s["json"])["capfilt"]["caption"] == s["txt"].decode() for s in clips.values())


def test_the_report_shows_a_frame_strip_per_video_example(video_output):
    report = json.loads((video_output / "report.json").read_text())
    videos = [e for e in report["examples"] if e.get("media") == "video"]
    assert videos and all(e["thumbnail"] for e in videos if e["status"] == "kept")
    html = (video_output / "report.html").read_text()
    assert "class=strip" in html and "4 frames of 2.5 s" in html


def test_video_reruns_are_byte_identical_and_resume_ends_the_same(tiny_models, video_input, video_output, tmp_path):
    again = tmp_path / "again"
    assert video_run(tiny_models, video_input[0], again) == 0
    assert outputs(again) == outputs(video_output)
    # As if the run had been stopped after the first shard: the rerun skips it and redoes the second.
    stamp = (again / "00000_stats.json").read_bytes()
    for name in ("00001.tar", "00001.parquet", "00001_stats.json", "_SUCCESS"):
        (again / name).unlink()
    assert video_run(tiny_models, video_input[0], again) == 0
    assert (again / "00000_stats.json").read_bytes() == stamp
    assert outputs(again) == outputs(video_output)


def test_a_video_over_the_decode_time_limit_is_dropped_and_the_shard_goes_on(tiny_models, tmp_path):
    members = [("c.mp4", clip_bytes(grey_frames(30))), ("c.txt", CAPTION), ("i.jpg", image_bytes())]
    write_shard(tmp_path / "in" / "00000.tar", members)
    assert video_run(tiny_models, tmp_path / "in", tmp_path / "out", "--set", "video.decode_seconds=0.000001") == 0
    table = {r["key"]: r for r in rows(tmp_path / "out")}
    assert table["c"]["status"] == "video_decode_timeout" and table["i"]["status"] == "kept"


def test_a_clips_similarity_is_the_cosine_with_its_mean_frame_embedding(tiny_models, tmp_path):
    import numpy as np
    import torch
    from torch.nn.functional import normalize

    from capfilt.models.similarity import ItcSimilarity
    from capfilt.pipeline.config import VideoConfig
    from capfilt.pipeline.shard.video import read_clip

    # Half red, half blue; the demo's trained ITC head (a random one embeds every frame alike) tells them apart.
    clip = clip_bytes([Image.new("RGB", (64, 48), colour) for colour in [(215, 35, 35)] * 6 + [(40, 75, 220)] * 6])
    members = [("c.mp4", clip), ("c.txt", CAPTION), ("i.jpg", image_bytes()), ("i.txt", CAPTION)]
    write_shard(tmp_path / "in" / "00000.tar", members)
    # float32 as the reference below computes (the default dtype auto is bfloat16 on a CPU that has it)
    settings = (
        "similarity.model=itc",
        "similarity.embeddings=true",
        "filter.model=embedded:itm",
        "runtime.dtype=float32",
        "video.frame_choice=shots",  # frames of both shots (longest_shot would look at one colour only)
    )
    sets = [item for setting in settings for item in ("--set", setting)]
    assert video_run(tiny_models, tmp_path / "in", tmp_path / "out", *sets) == 0
    table = {r["key"]: r for r in rows(tmp_path / "out")}
    # Computed here from the frames alone, without the pipeline's shared vision pass: CLIP4Clip's meanP.
    itc = ItcSimilarity.from_pretrained("embedded:itm", device="cpu")
    frames = itc.image_embeddings(read_clip(clip, VideoConfig(frames=4, frame_choice="shots")).frames)
    pooled = normalize(frames.mean(dim=0), dim=-1)
    text = itc.text_embeddings([table["c"]["caption"]])[0]
    assert table["c"]["similarity"] == pytest.approx(float(text @ pooled), abs=1e-5)
    assert not torch.allclose(frames[0], frames[-1])  # the frames differ, so the mean is not any one of them
    embeddings = np.load(tmp_path / "out" / "img_emb" / "img_emb_00000.npy").astype(np.float32)
    assert embeddings[0] == pytest.approx(pooled.numpy(), abs=2e-3)  # tar order: the clip first


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("video.frame=8", "video.frame: unknown key"),
        ("video.caption_frames=first", "video.caption_frames: must be one of middle, spread, all"),
        ("video.frames=0", "video.frames: must be between 1 and 256"),
        ("video.fps=yes", "video.fps: expected float or null"),
    ],
)
def test_bad_video_settings_are_one_line_naming_the_key(tiny_models, tmp_path, capsys, setting, message):
    write_shard(tmp_path / "in" / "00000.tar", [("c.mp4", b""), ("c.txt", CAPTION)])
    assert video_run(tiny_models, tmp_path / "in", tmp_path / "out", "--set", setting) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_select_over_scored_clips_writes_what_a_run_at_that_threshold_writes(
    tiny_models, video_input, video_output, tmp_path
):
    scored = tmp_path / "scored"
    assert video_run(tiny_models, video_input[0], scored, "--set", "filter.policy=score_only") == 0
    selected = tmp_path / "selected"
    assert main(["select", str(scored), "--output", str(selected), "--threshold", "0"]) == 0
    # The run behind video_output is policy best at threshold 0: the same decisions, so the same bytes, with each
    # clip's media, frames, duration and scored frame times carried through.
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        assert (selected / name).read_bytes() == (video_output / name).read_bytes(), name

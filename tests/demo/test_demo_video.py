"""The video demo: clips of the demo world, and `capfilt run demo-video` end to end as a user runs it."""

import hashlib
import json
import random
import tarfile

import pyarrow.parquet as pq
import pytest

from capfilt.cli import main
from capfilt.demo import contrastive, heldout, retrieval, world
from capfilt.demo.media import decode_media
from capfilt.demo.training_sets import RETRIEVAL_ROWS
from capfilt.demo.video_world import FPS, render_clip
from capfilt.pipeline.config import VideoConfig
from capfilt.pipeline.shard.video import read_clip
from tests.helpers import run_in_empty_folder

TINY_VIDEO = contrastive.ContrastiveConfig(steps=3, batch_size=8, image_size=16, width=16, text_layers=1, frames=2)


def _digest(paths: list[str]) -> list[str]:
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_video_demo_shards_are_byte_identical_per_seed_and_hold_clips_with_ground_truth(tmp_path):
    first = world.write_demo_shards(str(tmp_path / "a"), shards=1, samples_per_shard=12, seed=5, video=True)
    second = world.write_demo_shards(str(tmp_path / "b"), shards=1, samples_per_shard=12, seed=5, video=True)
    assert _digest(first) == _digest(second)
    with tarfile.open(first[0]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    clips = {name: data for name, data in members.items() if name.endswith((".mp4", ".webm"))}
    assert len(clips) == 12
    for name, data in clips.items():
        key = name.split(".")[0]
        meta = json.loads(members[f"{key}.json"])
        assert meta["gt_caption"] == world.normalise(meta["gt_caption"]) and meta["url"].endswith(name[len(key) :])
        clip = read_clip(data, VideoConfig())
        assert len(clip.frames) == 8 and 2.0 <= clip.duration <= 4.0 and clip.frames[0].size == (128, 128)


def test_a_clip_starts_as_the_still_image_and_moves():
    rng = random.Random(3)
    scene = world.sample_scene(rng)
    frames = render_clip(scene, rng, 24)
    assert frames[0].tobytes() == world.render(scene).tobytes()
    assert frames[-1].tobytes() != frames[0].tobytes()


@pytest.fixture(scope="module")
def demo_video_run(tmp_path_factory):
    """`capfilt run demo-video` from an empty folder: 128 clips written, cleaned and evaluated."""
    return run_in_empty_folder(tmp_path_factory.mktemp("demo-video"), "demo-video")


def test_demo_video_meets_the_goals_of_issue_19(demo_video_run):
    code, root = demo_video_run
    assert code == 0
    report = json.loads((root / "output" / "report.json").read_text())
    quality = report["evaluation"]
    assert quality["input"] == 128 and report["config"]["demo_data"]["video"] is True
    assert quality["kept_accuracy"] >= 0.95 and quality["clean_yield"] >= 0.90
    assert quality["kept_accuracy"] > quality["web_accuracy"] + 0.25
    rows = [r for p in sorted((root / "output").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {r["media"] for r in rows} == {"video"} and {r["frames"] for r in rows} == {8}


def _clips(path: str) -> dict[str, tuple[bytes, dict]]:
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    return {
        name.split(".")[0]: (data, json.loads(members[f"{name.split('.')[0]}.json"]))
        for name, data in members.items()
        if name.endswith((".mp4", ".webm"))
    }


def _background(caption: str) -> tuple[int, int, int]:
    return world.COLOURS[caption.split()[-2]]  # "... on a green background"


def _near(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_cuts_show_another_scene_for_the_shorter_part_and_leave_other_clips_alone(tmp_path):
    plain = _clips(world.write_demo_shards(str(tmp_path / "a"), 1, 40, seed=2, video=True)[0])
    cut = _clips(world.write_demo_shards(str(tmp_path / "b"), 1, 40, seed=2, video=True, cuts=0.5)[0])
    with_cut = {key for key, (_, meta) in cut.items() if "cut" in meta}
    assert 10 <= len(with_cut) <= 30
    for key in set(cut) - with_cut:
        assert cut[key] == plain[key]  # the same bytes and json as without --cuts
    differing = 0
    for key in with_cut:
        data, meta = cut[key]
        assert meta["gt_caption"] == plain[key][1]["gt_caption"]  # the caption names the scene shown longer
        clip = read_clip(data, VideoConfig(frames=48))  # every frame of the clip
        start, end = meta["cut"]["start"], meta["cut"]["end"]
        assert start == 0 or end == pytest.approx(clip.duration, abs=0.1)  # the other scene opens or ends it
        assert 0 < end - start < clip.duration / 2
        inside, outside = _background(meta["cut"]["caption"]), _background(meta["gt_caption"])
        if inside == outside:
            continue
        differing += 1
        for frame, time in zip(clip.frames, clip.times, strict=True):
            corner = frame.getpixel((1, 1))
            frame_index = round(time * FPS)  # the json's seconds are rounded
            shown = inside if round(start * FPS) <= frame_index < round(end * FPS) else outside
            assert _near(corner, shown), (key, time)
    assert differing >= 5
    with pytest.raises(ValueError, match="video"):
        world.write_demo_shards(str(tmp_path / "c"), 1, 4, cuts=0.5)


def test_video_heldout_clips_are_disjoint_from_every_input_frame_for_frame(tmp_path):
    sampling = VideoConfig(frames=4, frame_choice="shots")
    held = heldout.heldout_set(size=24, video=sampling, cuts=0.3)
    assert held == heldout.heldout_set(size=24, video=sampling, cuts=0.3)
    assert len(set(held.captions)) == 24 and all(len(frames) == 4 for frames in held.decoded())
    for seed in range(2):
        paths = world.write_demo_shards(str(tmp_path / f"{seed}"), 1, 24, seed=seed, video=True, cuts=0.3)
        clips = [data for data, _ in _clips(paths[0]).values()]
        heldout.check_disjoint(held, clips, [decode_media(data, sampling) for data in clips])
    # The check is real: a held-out clip among the training clips, as bytes or as one of its frames, is refused.
    with pytest.raises(AssertionError, match="held-out"):
        heldout.check_disjoint(held, [*clips, held.images[5]], [])
    with pytest.raises(AssertionError, match="held-out"):
        heldout.check_disjoint(held, [], [[world.render(world.sample_scene(random.Random(0)))], held.decoded()[2][1:2]])


@pytest.fixture(scope="module")
def cut_video_run(tmp_path_factory):
    """Clips with cuts, cleaned by `capfilt run demo-video` with frames placed by shots, as a user runs it."""
    root = tmp_path_factory.mktemp("cut-video")
    demo = ["demo-data", "--video", "--cuts", "0.4", "--output", str(root / "in")]
    assert main([*demo, "--shards", "2", "--samples-per-shard", "16"]) == 0
    run = ["run", "demo-video", "--input", str(root / "in" / "*.tar"), "--output", str(root / "out")]
    assert main([*run, "--set", "video.frame_choice=longest_shot", "--set", "runtime.threads=1"]) == 0
    return root / "out"


@pytest.mark.usefixtures("one_thread")
def test_eval_retrieval_on_a_video_run_trains_every_table1_row_on_clips(cut_video_run, monkeypatch, capsys):
    monkeypatch.setattr(retrieval, "VIDEO_CONFIG", TINY_VIDEO)
    monkeypatch.setattr(retrieval, "SEEDS", (0, 1))
    monkeypatch.setattr(heldout, "SIZE", 20)
    assert main(["eval", str(cut_video_run), "--ablation", "--retrieval"]) == 0
    printed = capsys.readouterr().out
    assert "clips with a cut" in printed and "held-out default-world clips" in printed and "v→t R@1" in printed
    report = json.loads((cut_video_run / "report.json").read_text())
    result = report["retrieval"]
    assert result["media"] == "video" and result["frame_choice"] == "longest_shot"
    assert result["config"]["frames"] == 2 and result["seeds"] == [0, 1] and 0 < result["heldout"]["cuts"] < 1
    assert [r["name"] for r in result["rows"]] == list(RETRIEVAL_ROWS)
    kept = {r["name"]: r["kept"] for r in report["ablation"]}
    assert result["rows"][-1]["samples"] == kept["capfilt"] and result["rows"][0]["samples"] == kept["none"]
    for row in result["rows"]:
        assert len(row["per_seed"]) == 2 and all(0 <= row["mean"][k] <= 1 for k in retrieval.COLUMNS)
    cuts = report["evaluation"]["cut_clips"]
    assert 0 < cuts["count"] < 32 and cuts["kept_correct"] <= cuts["kept"] <= cuts["count"]
    html = (cut_video_run / "report.html").read_text()
    assert "Retrieval (BLIP Table 1)" in html and "v→t R@1" in html and "longest_shot frames" in html

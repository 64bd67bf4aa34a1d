"""The video demo: clips of the demo world, and `capfilt run demo-video` end to end as a user runs it."""

import hashlib
import json
import random
import tarfile

import pyarrow.parquet as pq
import pytest

from capfilt.cli import main
from capfilt.demo import world
from capfilt.demo.video_world import render_clip
from capfilt.pipeline.config import VideoConfig
from capfilt.pipeline.shard.video import read_clip
from tests.helpers import run_in_empty_folder


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


def test_eval_reads_a_video_run_and_retrieval_says_it_needs_images(demo_video_run, capsys):
    _, root = demo_video_run
    assert main(["eval", str(root / "output"), "--ablation"]) == 0
    assert "capfilt" in capsys.readouterr().out
    assert main(["eval", str(root / "output"), "--retrieval"]) == 2
    assert "video samples" in capsys.readouterr().err

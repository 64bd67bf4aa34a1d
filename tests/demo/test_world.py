"""The demo world: captions, noise kinds and deterministic shards."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import random
import tarfile

import pytest
from PIL import Image

from capfilt.cli import main
from capfilt.demo import world as world


def _members(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _samples(paths: list[str]) -> dict[str, dict[str, bytes]]:
    """Members grouped by key (up to the first dot), as WebDataset does."""
    samples: dict[str, dict[str, bytes]] = collections.defaultdict(dict)
    for path in paths:
        for name, data in _members(path).items():
            key, ext = name.split(".", 1)
            samples[key][ext] = data
    return samples


def _digest(paths: list[str]) -> list[str]:
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_shards_are_byte_identical_per_seed_and_differ_across_seeds(tmp_path):
    first = world.write_demo_shards(str(tmp_path / "a"), shards=2, samples_per_shard=8, seed=3)
    second = world.write_demo_shards(str(tmp_path / "b"), shards=2, samples_per_shard=8, seed=3)
    other = world.write_demo_shards(str(tmp_path / "c"), shards=2, samples_per_shard=8, seed=4)
    assert [p.rsplit("/", 1)[1] for p in first] == ["00000.tar", "00001.tar"]
    assert _digest(first) == _digest(second)
    assert _digest(first)[0] != _digest(other)[0]
    # The shards of one seed differ from each other too.
    assert _digest(first)[0] != _digest(first)[1]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["00000.tar", "00001.tar"]  # no temp files


def test_samples_carry_image_json_and_the_right_caption_per_noise_kind(tmp_path):
    paths = world.write_demo_shards(str(tmp_path), shards=2, samples_per_shard=150, seed=0)
    samples = _samples(paths)
    assert len(samples) == 300
    assert "00001_000149" in samples
    kinds = collections.Counter()
    formats = collections.Counter()
    for members in samples.values():
        meta = json.loads(members["json"])
        assert set(meta) == {"gt_caption", "noise", "url"}
        assert meta["url"].startswith("https://demo.capfilt/")
        kinds[meta["noise"]] += 1
        image_ext = [e for e in members if e in ("jpg", "png")]
        assert len(image_ext) == 1
        formats[image_ext[0]] += 1
        Image.open(io.BytesIO(members[image_ext[0]])).verify()
        truth = world.normalise(meta["gt_caption"])
        text = members.get("txt", b"").decode("utf-8") if "txt" in members else None
        kind = meta["noise"]
        if kind == "missing":
            assert text is None
            continue
        assert text is not None
        if kind == "correct":
            assert world.normalise(text) == truth
        elif kind == "empty":
            assert text.strip() == ""
        else:
            assert world.normalise(text) != truth
        if kind == "one_word_off":
            a, b = text.split(), meta["gt_caption"].split()
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
        if kind == "other_image":
            assert set(world.normalise(text).split()) <= set(world.VOCABULARY)
    assert set(kinds) == set(world.NOISE_KINDS)
    # 40% correct by default (binomial sd ~2.8% at n=300), the rest spread evenly (~12% each).
    assert 0.32 <= kinds["correct"] / 300 <= 0.48
    for kind in world.NOISE_KINDS[1:]:
        assert 0.05 <= kinds[kind] / 300 <= 0.2, kinds
    assert formats["jpg"] > formats["png"] > 0


def test_correct_fraction_is_honoured(tmp_path):
    paths = world.write_demo_shards(str(tmp_path), shards=1, samples_per_shard=200, seed=1, correct_fraction=0.9)
    kinds = collections.Counter(json.loads(m["json"])["noise"] for m in _samples(paths).values())
    assert kinds["correct"] >= 165
    with pytest.raises(ValueError):
        world.write_demo_shards(str(tmp_path), correct_fraction=1.5)


def test_a_noise_mix_replaces_the_default_proportions(tmp_path):
    mix = {"correct": 1.0, "one_word_off": 3.0, "missing": 0.0}
    paths = world.write_demo_shards(str(tmp_path), shards=1, samples_per_shard=200, seed=1, noise_mix=mix)
    samples = _samples(paths)
    kinds = collections.Counter(json.loads(m["json"])["noise"] for m in samples.values())
    assert set(kinds) == {"correct", "one_word_off"} and 125 <= kinds["one_word_off"] <= 175, kinds
    for members in samples.values():
        meta = json.loads(members["json"])
        correct = world.normalise(members["txt"].decode()) == world.normalise(meta["gt_caption"])
        assert correct == (meta["noise"] == "correct")
    # The same mix and seed give the same bytes.
    again = world.write_demo_shards(str(tmp_path / "again"), shards=1, samples_per_shard=200, seed=1, noise_mix=mix)
    assert _members(again[0]) == _members(paths[0])


@pytest.mark.parametrize(
    "text,fragment",
    [("correct=1,spam=1", "unknown noise kind 'spam'"), ("correct", "not KIND=WEIGHT"), ("empty=-1", ">= 0")],
)
def test_bad_noise_mixes_are_refused(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        world.parse_noise_mix(text)
    assert world.parse_noise_mix(" correct=0.3, one_word_off=0.7 ") == {"correct": 0.3, "one_word_off": 0.7}


def test_normalise():
    assert world.normalise("  A Large, RED circle!\n on the   left. ") == "a large red circle on the left"
    assert world.normalise("IMG_2031.JPG") == "img 2031 jpg"
    assert world.normalise(" \t ") == ""


def test_captions_use_the_vocabulary_and_tell_scenes_apart():
    rng = random.Random(0)
    scenes = [world.sample_scene(rng) for _ in range(300)]
    captions = [world.canonical_caption(s) for s in scenes]
    for caption in captions:
        assert set(caption.split()) <= set(world.VOCABULARY)
        assert world.normalise(caption) == caption
    assert set(world.PROMPT.split()) <= set(world.VOCABULARY)
    assert {len(s.things) for s in scenes} == {1, 2}
    assert len(set(captions)) > 250  # a rich world: few repeats
    for scene in scenes:
        assert all(t.colour != scene.background for t in scene.things)


def test_one_word_off_changes_exactly_one_word_for_every_factor():
    rng = random.Random(1)
    changed = collections.Counter()
    for _ in range(300):
        scene = world.sample_scene(rng)
        truth = world.canonical_caption(scene).split()
        wrong = world.one_word_off(scene, rng).split()
        assert len(wrong) == len(truth)
        diffs = [(a, b) for a, b in zip(truth, wrong) if a != b]
        assert len(diffs) == 1
        a, b = diffs[0]
        for name, values in (
            ("colour", world.COLOURS),
            ("shape", world.SHAPES),
            ("size", world.SIZES),
            ("position", world.POSITIONS),
        ):
            if a in values:
                assert b in values
                changed[name] += 1
    assert set(changed) == {"colour", "shape", "size", "position"}


def test_perturb_scene_changes_the_factor_asked_for():
    rng = random.Random(2)
    values = {"colour": set(world.COLOURS), "shape": set(world.SHAPES), "size": set(world.SIZES)}
    values["position"] = set(world.POSITIONS)
    for _ in range(100):
        scene = world.sample_scene(rng)
        for factor in world.FACTORS:
            changed = world.perturb_scene(scene, rng, factor)
            if factor == "background":
                assert changed.background != scene.background and changed.things == scene.things
                continue
            assert changed.background == scene.background
            (new, old), *rest = [(n, o) for n, o in zip(changed.things, scene.things) if n != o]
            assert not rest
            assert getattr(new, factor) != getattr(old, factor) and getattr(new, factor) in values[factor]
            assert all(getattr(new, f) == getattr(old, f) for f in values if f != factor)


def test_render_is_deterministic_and_draws_the_scene():
    scene = world.Scene("black", (world.Thing("large", "red", "square", "left"),), jitter=7)
    image = world.render(scene)
    assert image.size == (world.IMAGE_SIZE, world.IMAGE_SIZE)
    assert image.tobytes() == world.render(scene).tobytes()
    side = world.IMAGE_SIZE
    assert image.getpixel((int(side * 0.25), side // 2)) == world.COLOURS["red"]
    assert image.getpixel((int(side * 0.85), side // 2)) == world.COLOURS["black"]


def test_boilerplate_is_varied():
    rng = random.Random(2)
    texts = {world.boilerplate_caption(rng) for _ in range(200)}
    assert len(texts) > 100


def test_lookalike_world_draws_two_objects_one_attribute_apart(tmp_path, capsys):
    rng = random.Random(3)
    for _ in range(200):
        scene = world.sample_scene(rng, "lookalike")
        a, b = scene.things
        assert (a.position, b.position) in world.LAYOUTS
        assert sum(getattr(a, f) != getattr(b, f) for f in ("size", "colour", "shape")) == 1
        assert scene.background not in (a.colour, b.colour)
    paths = world.write_demo_shards(str(tmp_path / "look"), shards=1, samples_per_shard=30, seed=0, world="lookalike")
    for members in _samples(paths).values():
        meta = json.loads(members["json"])
        assert meta["world"] == "lookalike" and " and " in meta["gt_caption"]
    # The default world's json names no world: its shards stay byte for byte what they were.
    default = world.write_demo_shards(str(tmp_path / "default"), shards=1, samples_per_shard=30, seed=0)
    assert all("world" not in json.loads(m["json"]) for m in _samples(default).values())
    with pytest.raises(ValueError, match="unknown world 'cubist'"):
        world.write_demo_shards(str(tmp_path / "x"), world="cubist")
    assert main(["demo-data", "--output", str(tmp_path / "y"), "--world", "cubist"]) == 2
    assert "unknown world 'cubist'" in capsys.readouterr().err

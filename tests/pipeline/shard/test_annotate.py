"""The model stages of a shard: the seed of each batch, which frames of a clip are captioned, the synthetic captions
each live sample gets, and the scores of every candidate, with the tiny random-weight models."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from capfilt.models.pixels import image_pixels
from capfilt.pipeline.config import load_config
from capfilt.pipeline.shard.annotate import batch_seed, caption_batch, caption_frames, score_batch
from capfilt.pipeline.shard.loaded_models import load_models
from capfilt.pipeline.shard.pixels import SharedPixels
from capfilt.pipeline.shard.sample import Sample
from capfilt.pipeline.shard.video import uniform_indices
from tests.helpers import TEST_SETTINGS, picture


@pytest.fixture(scope="module")
def models(tiny_models):
    """The captioner, the ITM filter and the filter's own ITC head, loaded as a run loads them."""
    settings = {
        "captioner.model": tiny_models[0],
        "filter.model": tiny_models[1],
        **TEST_SETTINGS,
        "similarity.model": "itc",
        "runtime.dtype": "float32",  # bfloat16 would round the random models' scores of different texts together
    }
    return load_models(load_config("demo", overrides=[f"{k}={v}" for k, v in settings.items()]), threads=0)


class Recording:
    """A model whose calls to ``methods`` are recorded as (method, arguments, result); all else is the model's."""

    def __init__(self, model, *methods: str):
        self._model, self.calls = model, []
        for name in methods:
            setattr(self, name, self._recorded(name, getattr(model, name)))

    def _recorded(self, name, method):
        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            self.calls.append((name, args, kwargs, result))
            return result

        return call

    def __getattr__(self, name):
        return getattr(self._model, name)


def calls(captioner: Recording) -> list[tuple[list[int], int, int]]:
    """The pictures (by identity), seed and captions per picture of each recorded ``caption`` call."""
    return [([id(p) for p in args[0]], kw["seed"], kw["num_captions"]) for _, args, kw, _ in captioner.calls]


def image_sample(key: str, color, web_text: str | None = "a red square") -> Sample:
    sample = Sample(key=key, web_text=web_text, media="image", frame_count=1)
    sample.image = Image.new("RGB", (24, 16), color)
    return sample


def video_sample(key: str, frames: int) -> Sample:
    sample = Sample(key=key, web_text="a moving picture", media="video", frame_count=frames)
    sample.frames = [picture((24, 16)).rotate(30 * i) for i in range(frames)]
    return sample


def dropped_sample() -> Sample:
    sample = Sample(key="gone", web_text="a caption")
    sample.drop("undecodable_image", "cannot identify image file")
    return sample


# ---- batch_seed ----

SEEDS = [(0, "00000", 0), (0, "00000", 1), (0, "00001", 0), (1, "00000", 0), (7, "shards/a/00012", 3)]


def test_batch_seeds_differ_by_seed_shard_and_batch_and_fit_torch():
    values = [batch_seed(*args) for args in SEEDS]
    assert len(set(values)) == len(values)
    assert all(0 <= v < 2**63 for v in values)  # torch.manual_seed takes a signed 64-bit integer


def test_any_worker_process_gets_the_same_batch_seeds():
    # Other processes, with other string hashes: what a worker on another machine computes for the same batch.
    code = f"from capfilt.pipeline.shard.annotate import batch_seed; print([batch_seed(*a) for a in {SEEDS!r}])"
    here = str([batch_seed(*args) for args in SEEDS])
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == here


# ---- caption_frames ----


@pytest.mark.parametrize("frames", [1, 2, 3, 8, 13])
@pytest.mark.parametrize("captions", [1, 3, 5])
def test_caption_frames_give_every_caption_a_frame_of_the_clip(frames, captions):
    middle, spread, every = (caption_frames(frames, mode, captions) for mode in ("middle", "spread", "all"))
    assert middle == [(frames // 2, captions)]
    if frames == 1:  # an image: its captions all come from it, whatever the mode
        assert spread == every == middle
        return
    # spread: one caption from each of `captions` moments in time order, the middles of equal parts of the clip,
    # as the video reader samples a clip's frames (at a constant rate)
    assert [count for _, count in spread] == [1] * captions
    picked = [frame for frame, _ in spread]
    assert picked == sorted(picked) and 0 <= picked[0] and picked[-1] < frames
    if frames >= captions:
        assert picked == uniform_indices([float(i) for i in range(frames)], float(frames), captions)
    assert every == [(frame, captions) for frame in range(frames)]


def test_caption_frames_with_nothing_to_caption_and_an_unknown_mode():
    assert caption_frames(8, "spread", 0) == caption_frames(0, "all", 3) == []
    with pytest.raises(ValueError, match="unknown caption_frames 'first'"):
        caption_frames(8, "first", 3)


# ---- caption_batch ----


def test_images_are_captioned_in_one_call_with_the_batch_seed_and_dropped_samples_are_left(models):
    captioner = Recording(models.captioner, "caption")
    batch = [image_sample("a", (200, 30, 30)), dropped_sample(), image_sample("b", (30, 30, 200), web_text=None)]
    caption_batch(batch, captioner, seed=1234)
    live = [batch[0].image, batch[2].image]
    assert calls(captioner) == [([id(p) for p in live], 1234, 3)]
    expected = [[c for c in captions if c] for captions in models.captioner.caption(live, 1234)]
    assert [batch[0].synthetic, batch[2].synthetic] == expected
    assert all(len(captions) == 3 for captions in expected)  # TEST_SETTINGS: three each, min_length 2
    assert batch[1].synthetic == [] and batch[1].status == "undecodable_image"


def test_the_same_seed_gives_the_same_captions_and_another_seed_others(models):
    def captions(seed):
        batch = [image_sample(f"s{i}", (40 * i, 200 - 40 * i, 90)) for i in range(4)]
        caption_batch(batch, models.captioner, seed)
        return [s.synthetic for s in batch]

    assert captions(5) == captions(5)
    assert captions(5) != captions(6)


def test_the_captioner_sees_the_pixels_made_ahead_of_its_own_pictures(models):
    # The random-weight models hardly tell pictures apart, so what is checked is the pixels they are handed.
    def captioned(ahead: bool):
        captioner = Recording(models.captioner, "caption")
        batch = [image_sample(f"s{i}", (40 * i, 200 - 40 * i, 90)) for i in range(3)] + [video_sample("v", 4)]
        pixels = SharedPixels([captioner]) if ahead else None
        if ahead:
            pixels.attach(batch)
        caption_batch(batch, captioner, 99, "spread", pixels)
        return captioner.calls, [s.synthetic for s in batch]

    calls_ahead, ahead = captioned(ahead=True)
    assert len(calls_ahead) == 2  # the images' call, then the clip's frames'
    for _, (pictures,), given, _ in calls_ahead:
        expected = image_pixels(models.captioner.image_processor, pictures)
        assert torch.equal(given["pixel_values"], expected)  # each picture's own, in order
    calls_there, there = captioned(ahead=False)
    assert [given["pixel_values"] for _, _, given, _ in calls_there] == [None, None] and ahead == there


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("middle", [(["image", 2], 50, 3)]),  # the clip's middle frame, as many captions as an image
        ("spread", [(["image"], 50, 3), ([0, 2, 3], 51, 1)]),  # one caption from each of three moments
        ("all", [(["image", 0, 1, 2, 3], 50, 3)]),  # three from every frame
    ],
)
def test_a_clip_is_captioned_from_the_frames_its_mode_picks(models, mode, expected):
    captioner = Recording(models.captioner, "caption")
    image, clip = image_sample("i", (200, 30, 30)), video_sample("v", 4)
    caption_batch([image, clip], captioner, seed=50, mode=mode)
    # The call with the most captions per picture, every image's, gets the batch seed.
    pictures = {"image": image.image, **dict(enumerate(clip.frames))}
    assert calls(captioner) == [([id(pictures[p]) for p in wanted], seed, n) for wanted, seed, n in expected]
    written = {
        id(p): [c for c in texts if c]
        for _, (called,), _, captions in captioner.calls
        for p, texts in zip(called, captions)
    }
    assert image.synthetic == written[id(image.image)]
    from_frames = [c for frame in clip.frames if id(frame) in written for c in written[id(frame)]]
    assert clip.synthetic == (list(dict.fromkeys(from_frames)) if mode == "all" else from_frames)


def test_a_clip_captioned_from_every_frame_keeps_each_caption_once(models):
    short = copy.copy(models.captioner)
    short.min_length = short.max_length = 1  # one-word captions: across 8 frames some come back
    captioner = Recording(short, "caption")
    clip = video_sample("v", 8)
    caption_batch([clip], captioner, seed=3, mode="all")
    written = [c for texts in captioner.calls[0][3] for c in texts if c]
    assert len(set(written)) < len(written)
    assert clip.synthetic == list(dict.fromkeys(written))


# ---- score_batch ----


def test_each_sample_is_scored_once_per_distinct_candidate_against_its_own_pictures(models):
    scorer = Recording(models.scorer, "vision_states", "score_clips")
    a, gone, b = image_sample("a", (200, 30, 30)), dropped_sample(), image_sample("b", (30, 30, 200), web_text=None)
    clip = video_sample("v", 2)
    a.synthetic = ["a blue circle", "a red square", "a blue circle"]  # a repeat, and the web text again
    b.synthetic = ["a small triangle"]
    clip.synthetic = ["a red square"]
    score_batch([a, gone, b, clip], scorer)
    (_, (frames, _), _, states), (_, (clips, candidates, given), _, scores) = scorer.calls
    # One vision pass over every live picture, its states reused for every candidate; a clip's frames together.
    assert [id(f) for f in frames] == [id(a.image), id(b.image), *map(id, clip.frames)] and given is states
    assert [[id(p) for p in c] for c in clips] == [[id(a.image)], [id(b.image)], [id(f) for f in clip.frames]]
    assert candidates == [["a red square", "a blue circle"], ["a small triangle"], ["a moving picture", "a red square"]]
    web, circle = scores[0]
    assert (a.web_score, a.synthetic_scores) == (web, [circle, web, circle])
    assert (b.web_score, b.synthetic_scores) == (None, scores[1])
    assert (clip.web_score, clip.synthetic_scores) == (scores[2][0], scores[2][1:])
    assert gone.web_score is None and gone.synthetic_scores == []
    assert not a.has_similarity  # no similarity model given
    assert scores[0] == pytest.approx(models.scorer.score([a.image], [candidates[0]])[0], abs=1e-6)
    assert len(set(scores[0])) == 2  # the texts score apart, so a score given to the wrong text shows


def test_the_filters_itc_head_reuses_its_vision_pass_and_gives_unit_embeddings(models):
    scorer = Recording(models.scorer, "vision_states")
    similarity = Recording(models.similarity, "embed")
    batch = [image_sample("a", (200, 30, 30)), video_sample("v", 3)]
    for sample in batch:
        sample.synthetic = ["a blue circle", "a red square"]
    score_batch(batch, scorer, similarity, keep_embeddings=True)
    assert len(scorer.calls) == 1 and similarity.calls[0][2]["vision_states"] is scorer.calls[0][3]
    for sample in batch:
        texts = [sample.web_text, *sample.synthetic]
        similarities = [sample.web_similarity, *sample.synthetic_similarities]
        assert set(sample.text_embeddings) == set(texts)
        assert np.linalg.norm(sample.image_embedding) == pytest.approx(1, abs=1e-5)
        for text, similarity_of_text in zip(texts, similarities):
            embedding = sample.text_embeddings[text]
            assert np.linalg.norm(embedding) == pytest.approx(1, abs=1e-5)
            assert float(sample.image_embedding @ embedding) == pytest.approx(similarity_of_text, abs=1e-5)
    expected = models.similarity.score([batch[0].image], [[batch[0].web_text, *batch[0].synthetic]])[0]
    assert [batch[0].web_similarity, *batch[0].synthetic_similarities] == pytest.approx(expected, abs=1e-5)
    alone = image_sample("a", (200, 30, 30))
    alone.synthetic = ["a blue circle", "a red square"]
    score_batch([alone], models.scorer, models.similarity)
    assert alone.image_embedding is None and alone.text_embeddings == {}  # kept only when asked for
    assert alone.synthetic_similarities == pytest.approx(batch[0].synthetic_similarities, abs=1e-5)


def test_the_filter_sees_the_pixels_made_ahead_of_its_own_pictures(models):
    def scored(ahead: bool):
        scorer = Recording(models.scorer, "vision_states")
        batch = [image_sample(f"s{i}", (40 * i, 200 - 40 * i, 90)) for i in range(3)] + [video_sample("v", 2)]
        for sample in batch:
            sample.synthetic = ["a blue circle", "a red square"]
        pixels = SharedPixels([models.captioner, scorer]) if ahead else None
        if ahead:
            pixels.attach(batch)
        score_batch(batch, scorer, models.similarity, pixels=pixels)
        (_, (frames, given), _, _) = scorer.calls[0]
        values = [v for s in batch for v in (s.web_score, *s.synthetic_scores, s.web_similarity)]
        return frames, given, values

    frames, given, ahead = scored(ahead=True)
    assert torch.equal(given, image_pixels(models.scorer.image_processor, frames))  # each picture's own, in order
    _, made_there, there = scored(ahead=False)
    assert made_there is None and ahead == pytest.approx(there, abs=1e-6)

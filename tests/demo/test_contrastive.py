"""The contrastive trainer: a few real training steps on demo-world pairs, the batch order, the tokenizer."""

import random

import pytest
import torch

from capfilt.demo import contrastive, world

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = contrastive.ContrastiveConfig(steps=40, batch_size=8, lr=3e-3, image_size=16, width=32, text_layers=1)


def _pairs(count: int, seed: int = 0):
    rng = random.Random(f"test-contrastive/{seed}")
    scenes = [world.sample_scene(rng) for _ in range(count)]
    tokenizer = contrastive.WordTokenizer(world.VOCABULARY)
    images = contrastive.pixels([world.render(s, 32) for s in scenes], TINY.image_size)
    ids = tokenizer.encode([world.canonical_caption(s) for s in scenes], TINY.max_tokens)
    return images, ids, len(tokenizer)


def _loss(model, images, ids) -> float:
    with torch.no_grad():
        return contrastive.info_nce(model.encode_images(images), model.encode_texts(ids), model.logit_scale).item()


def test_a_few_steps_learn_the_pairs_and_repeat_with_the_seed():
    images, ids, vocabulary = _pairs(8)
    untrained = contrastive.train(
        images, ids, vocabulary, contrastive.ContrastiveConfig(**{**TINY.__dict__, "steps": 1})
    )
    model = contrastive.train(images, ids, vocabulary, TINY)
    assert _loss(model, images, ids) < 0.5 * _loss(untrained, images, ids)
    image_embeds, text_embeds = contrastive.embed(model, images, ids)
    assert image_embeds.shape == text_embeds.shape == (8, TINY.width)
    assert torch.allclose(image_embeds.norm(dim=1), torch.ones(8), atol=1e-5)
    # Trained on 8 pairs for 40 steps, it matches most of them.
    assert (image_embeds @ text_embeds.T).argmax(1).eq(torch.arange(8)).sum() >= 6
    again = contrastive.train(images, ids, vocabulary, TINY)
    assert torch.equal(contrastive.embed(again, images, ids)[0], image_embeds)
    other_seed = contrastive.train(
        images, ids, vocabulary, contrastive.ContrastiveConfig(**{**TINY.__dict__, "seed": 1})
    )
    assert not torch.equal(contrastive.embed(other_seed, images, ids)[0], image_embeds)


@pytest.mark.parametrize("size", [5, 8, 37])
def test_every_data_set_is_seen_for_the_same_samples_each_pair_as_often(size):
    order = contrastive.batch_order(size, steps=10, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert order.shape == (10, 8)
    counts = torch.bincount(order.flatten(), minlength=size)
    assert int(counts.max() - counts.min()) <= 1
    assert int(counts.sum()) == 80


def test_tokenizer_pads_cuts_and_marks_unknown_words():
    tokenizer = contrastive.WordTokenizer(["red", "circle", "a"])
    ids = tokenizer.encode(["A red, CIRCLE!", "IMG_2031.JPG", "", "a a a a a a"], max_tokens=4)
    red, circle, a = (tokenizer.ids[w] for w in ("red", "circle", "a"))
    assert ids.tolist() == [[a, red, circle, 0], [1, 1, 1, 0], [1, 0, 0, 0], [a, a, a, a]]


def test_bad_settings_and_data_are_refused():
    with pytest.raises(ValueError, match="steps"):
        contrastive.ContrastiveConfig(steps=0)
    with pytest.raises(ValueError, match="multiple of 16"):
        contrastive.ContrastiveConfig(image_size=40)
    images, ids, vocabulary = _pairs(4)
    with pytest.raises(ValueError, match="as many images as texts"):
        contrastive.train(images, ids[:3], vocabulary, TINY)


def test_clips_pool_their_frames_as_clip4clip_meanp():
    images, ids, vocabulary = _pairs(6)
    model = contrastive.train(images, ids, vocabulary, contrastive.ContrastiveConfig(**{**TINY.__dict__, "steps": 2}))
    clips = torch.stack([images[[0, 1, 2]], images[[3, 3, 3]]])  # (2 clips, 3 frames, 3, s, s)
    with torch.no_grad():
        pooled = model.encode_images(clips)
        frames = torch.nn.functional.normalize(model.image_tower(images), dim=-1)
        expected = torch.nn.functional.normalize(frames[[0, 1, 2]].mean(0), dim=0)
        assert torch.allclose(pooled[0], expected, atol=1e-6)
        # A still clip is its one image: pooling the same frame changes nothing.
        assert torch.allclose(pooled[1], model.encode_images(images[3:4])[0], atol=1e-6)
    # Training and embedding take clips as they take images.
    clip_model = contrastive.train(clips.repeat(2, 1, 1, 1, 1), ids[:4], vocabulary, TINY)
    assert contrastive.embed(clip_model, clips, ids[:2])[0].shape == (2, TINY.width)


def test_clip_pixels_spreads_long_clips_and_repeats_short_ones():
    from PIL import Image

    clip = [Image.new("RGB", (8, 8), (10 * i, 0, 0)) for i in range(8)]
    red = lambda tensor: tensor[:, :, 0, 0, 0].tolist()  # noqa: E731
    assert red(contrastive.clip_pixels([clip], 4, 16)) == [[10, 30, 50, 70]]  # the middles of 4 equal parts
    assert red(contrastive.clip_pixels([clip[:2]], 4, 16)) == [[0, 0, 10, 10]]
    assert red(contrastive.clip_pixels([clip[:3], clip[:1]], 2, 16)) == [[0, 20], [0, 0]]

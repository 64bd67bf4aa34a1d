"""The training data of the demo models, drawn fresh from the demo world at every step: images, true and wrong
captions, the captioner's own mistakes, and the per-token targets of the filter's extra losses."""

from __future__ import annotations

import random

from ...pipeline.config import DecodeConfig
from ...pipeline.shard.decode import open_image
from .. import world

DECODE = DecodeConfig()


def draw_images(rng: random.Random, n: int) -> tuple[list[world.Scene], list]:
    """``n`` fresh scenes and their images, encoded to JPEG/PNG bytes like demo shards and decoded back by the
    pipeline's own decoder, so training sees the compression artefacts the pipeline will."""
    scenes = [world.sample_scene(rng) for _ in range(n)]
    images = []
    for scene in scenes:
        fmt = "png" if rng.random() < world.PNG_FRACTION else "jpg"
        image, _, error = open_image(world.encode_image(world.render(scene), fmt), DECODE.max_pixels, DECODE.draft_size)
        if image is None:
            raise ValueError(f"a demo image failed to decode: {error}")
        images.append(image)
    return scenes, images


def negative_caption(scene: world.Scene, rng: random.Random) -> str:
    """A wrong caption for ``scene``, drawn over many kinds of error so the filter learns to check every word
    against the image rather than the frequencies of one noise generator."""
    truth = world.canonical_caption(scene)
    kind = rng.random()
    if kind < 0.40:
        text = world.one_word_off(scene, rng)
    elif kind < 0.50:
        text = world.canonical_caption(world.perturb_scene(world.perturb_scene(scene, rng), rng))
    elif kind < 0.58 and len(scene.things) == 2 and scene.things[0] != scene.things[1]:
        text = world.canonical_caption(_swap_attributes(scene))
    elif kind < 0.66:
        text = world.canonical_caption(_one_object_more_or_less(scene, rng))
    elif kind < 0.72:
        # Cut short, as a caption that hit the length limit would be.
        words = truth.split()
        text = " ".join(words[: rng.randrange(2, len(words))])
    elif kind < 0.86:
        text = world.canonical_caption(world.sample_scene(rng))
    elif kind < 0.95:
        text = world.boilerplate_caption(rng)
    else:
        text = " ".join(rng.choice(world.VOCABULARY) for _ in range(rng.randrange(1, 20)))
    if world.normalise(text) == world.normalise(truth):
        return world.one_word_off(scene, rng)
    return text


def _swap_attributes(scene: world.Scene) -> world.Scene:
    """The right attributes bound to the wrong objects: a two-object scene with its objects' places swapped."""
    a, b = scene.things
    swapped = (
        world.Thing(b.size, b.colour, b.shape, a.position),
        world.Thing(a.size, a.colour, a.shape, b.position),
    )
    return world.Scene(scene.background, swapped, scene.jitter)


def _one_object_more_or_less(scene: world.Scene, rng: random.Random) -> world.Scene:
    """A partially correct scene: one of two objects left out, or an object that is not there added."""
    if len(scene.things) == 2:
        things = (scene.things[rng.randrange(2)],)
    else:
        things = scene.things + (world.sample_scene(rng).things[0],)
    return world.Scene(scene.background, things, scene.jitter)


def caption_batch(processor, rng: random.Random, batch_size: int):
    """Inputs and labels for one captioner step: "[DEC] a picture of CAPTION [SEP]", loss on the caption only.

    ``generate`` replaces the prompt's first token by [DEC] (the decoder BOS), so training does too; the
    prompt and the padding are masked out of the labels, and the model shifts labels by one itself.
    Returns ``(pixel_values, input_ids, attention_mask, labels)``.
    """
    tokenizer = processor.tokenizer
    scenes, images = draw_images(rng, batch_size)
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    texts = [f"{world.PROMPT} {world.canonical_caption(s)}" for s in scenes]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    input_ids = encoded.input_ids.clone()
    input_ids[:, 0] = tokenizer.bos_token_id
    labels = input_ids.masked_fill(encoded.attention_mask == 0, -100)
    prompt_length = len(tokenizer(world.PROMPT).input_ids) - 1  # [CLS] + prompt words, without [SEP]
    labels[:, :prompt_length] = -100
    return pixel_values, input_ids, encoded.attention_mask, labels


def captioner_mistakes(captioner, images: int, rng: random.Random, batch_size: int = 64, image_processor=None) -> list:
    """The captioner's own wrong captions on ``images`` fresh training images: the errors the filter will meet
    in the pipeline. ``captioner`` is a ``Captioner`` or ``VlmCaptioner`` with the recommended sampling
    settings, each batch sampled with a seed drawn from ``rng``. Returns ``(scene, pixel_values, [wrong,
    ...])`` per image that has at least one wrong caption, the pixels made by ``image_processor`` (the
    filter's; default: the captioner's processor, which the BLIP pair shares)."""
    image_processor = image_processor or captioner.processor
    pool = []
    for start in range(0, images, batch_size):
        scenes, batch = draw_images(rng, min(batch_size, images - start))
        captions = captioner.caption(batch, seed=rng.randrange(2**31))
        pixel_values = image_processor(images=batch, return_tensors="pt").pixel_values
        for scene, pixels, group in zip(scenes, pixel_values, captions):
            truth = world.normalise(world.canonical_caption(scene))
            wrong = sorted({c for c in group if world.normalise(c) != truth})
            if wrong:
                pool.append((scene, pixels, wrong))
    return pool


def filter_texts(scenes, captions, hard, picked, negatives: int, rng: random.Random):
    """The texts of one filter step and what each is: per drawn scene its true caption (``captions[i]``), its
    hardest change (``hard[i]``, when mined) and wrong ones from ``negative_caption`` up to ``negatives``
    wrong; then per picked captioner mistake ``(scene, pixels, wrong)`` its truth and one of ``wrong``.

    Returns ``(texts, truths, image_index, targets)``: per text the true caption of its image, the row of its
    image (the picked images follow the drawn ones) and 1 for a match, 0 for not.
    """
    texts, truths, index, targets = [], [], [], []
    for i, (scene, truth) in enumerate(zip(scenes, captions)):
        wrong = [hard[i]] if hard else []
        wrong += [negative_caption(scene, rng) for _ in range(negatives - len(wrong))]
        texts += [truth] + wrong
        targets += [1] + [0] * len(wrong)
        truths += [truth] * (1 + len(wrong))
        index += [i] * (1 + len(wrong))
    for j, (scene, _, wrong) in enumerate(picked):
        truth = world.canonical_caption(scene)
        texts += [truth, rng.choice(wrong)]
        truths += [truth, truth]
        index += [len(scenes) + j] * 2
        targets += [1, 0]
    return texts, truths, index, targets


def word_targets(texts: list[str], truths: list[str], input_ids):
    """Per-token targets for the filter's word-level training signal: 1 where a word agrees with the image,
    0 where it does not, -100 (ignored) elsewhere.

    A text is labelled only when it has as many words as the true caption: the template then aligns slot by
    slot (one- and two-word-off, swapped objects, the captioner's slips, other images with as many objects),
    so a word that differs from the truth's word in its slot is wrong and one that matches is right.
    """
    targets = input_ids.new_full(input_ids.shape, -100)
    for row, (text, truth) in enumerate(zip(texts, truths)):
        words, true_words = text.split(), truth.split()
        if len(words) == len(true_words) and len(words) + 2 <= input_ids.shape[1]:
            targets[row, 1 : len(words) + 1] = input_ids.new_tensor([int(a == b) for a, b in zip(words, true_words)])
    return targets


def mask_words(input_ids, attention_mask, mask_id: int, rate: float, rng: random.Random):
    """Masked inputs and targets for the filter's grounded masked-word loss (ALBEF/BLIP-style MLM): each word
    of each caption is replaced by ``mask_id`` with probability ``rate``, at least one per caption; targets
    hold the hidden word there and -100 (ignored) elsewhere. The first and last real tokens ([CLS], [SEP])
    are never masked."""
    masked = input_ids.clone()
    targets = input_ids.new_full(input_ids.shape, -100)
    for row, length in enumerate(attention_mask.sum(1).tolist()):
        words = range(1, length - 1)
        chosen = [i for i in words if rng.random() < rate] or [rng.choice(words)]
        for i in chosen:
            targets[row, i] = input_ids[row, i]
            masked[row, i] = mask_id
    return masked, targets

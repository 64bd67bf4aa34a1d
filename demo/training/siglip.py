"""The demo SigLIP filter (``models/embedded/siglip``): a tiny ``SiglipModel`` whose vision tower starts from the
demo VLM captioner's (``demo.training.vlm``), as the BLIP filter starts from the BLIP captioner, trained with
SigLIP's pairwise sigmoid loss on demo-world pairs and the near misses a filter has to reject.

A dual encoder compares one image vector with one text vector, so everything a caption can get wrong (a colour,
a shape, a size, a place, the background, an object too many) must survive into both vectors. Contrast against
other images alone does not teach that: most pairs of a batch differ in several words. So each image also
meets, as negatives, each of its one-factor changes (``world.perturb_scene``), a mix of other wrong captions
(``data.negative_caption``) and, for some images, the captioner's own wrong captions. The loss averages three
parts so that neither the many easy pairs nor the rare positives swamp it: the true pairs, each image's own
wrong captions, and the other images' captions. Balanced this way the match probability crosses 0.5 where
the evidence turns, which is what ``filter.threshold: 0.5`` reads.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from .. import world
from . import tiny, vlm
from .data import captioner_mistakes, draw_images, negative_caption
from .loops import optimise
from .vlm import VLM_HIDDEN, VLM_LAYERS, vision_config

# Words a caption may have for the filter (demo captions have at most 20); SigLIP pads every text to this.
TEXT_TOKENS = 32


@dataclass(frozen=True)
class SiglipRecipe:
    """How the demo SigLIP filter is trained.

    Args:
        steps: optimiser steps.
        batch_size: fresh images per step, each with its caption, its one-factor changes and ``negatives``
            other wrong captions.
        negatives: wrong captions per image from ``data.negative_caption``.
        lr: peak AdamW learning rate (``loops.schedule``).
        mistake_images: fresh images the trained captioner captions before the filter trains; its wrong
            captions become negatives.
        mistakes_per_batch: images per step with one of the captioner's wrong captions.
        freeze_vision: keep the vision encoder copied from the captioner fixed (the pooling head trains).
        bfloat16: train under bfloat16 autocast.
    """

    steps: int = 1500
    batch_size: int = 64
    negatives: int = 2
    lr: float = 1e-3
    mistake_images: int = 512
    mistakes_per_batch: int = 16
    freeze_vision: bool = True
    bfloat16: bool = True


def build_filter(captioner, seed: int, hidden: int = VLM_HIDDEN, layers: int = VLM_LAYERS):
    """A fresh ``SiglipModel`` and ``SiglipProcessor`` whose vision encoder is ``captioner``'s (a trained
    ``LlavaForConditionalGeneration`` from ``vlm.build_captioner``); the attention-pooling head, the text tower,
    the temperature and the bias start fresh (SigLIP's initial temperature 10 and bias -10)."""
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor

    tokenizer = tiny.retokenized(list(world.VOCABULARY), model_input_names=["input_ids"], model_max_length=TEXT_TOKENS)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=TEXT_TOKENS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    vision = {k: v for k, v in vision_config(hidden, layers).items() if k != "model_type"}
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    source = captioner.model.vision_tower.state_dict()
    missing, unexpected = model.vision_model.load_state_dict(source, strict=False)
    if unexpected or any(not name.startswith("head.") for name in missing):
        raise ValueError(f"captioner and filter vision towers differ: missing {missing}, unexpected {unexpected}")
    return model, SiglipProcessor(image_processor=vlm.image_processor(), tokenizer=tokenizer)


def filter_texts(scenes, picked, negatives: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """The texts of one step and, per text, the row of the image it was made for: per drawn scene its caption,
    its one-factor changes and ``negatives`` wrong captions; per picked captioner mistake ``(scene, pixels,
    wrong)`` its caption and one of ``wrong`` (those images follow the drawn ones)."""
    texts, rows = [], []
    for i, scene in enumerate(scenes):
        made = [world.canonical_caption(scene)]
        made += [world.canonical_caption(world.perturb_scene(scene, rng, factor)) for factor in world.FACTORS]
        made += [negative_caption(scene, rng) for _ in range(negatives)]
        texts += made
        rows += [i] * len(made)
    for j, (scene, _, wrong) in enumerate(picked):
        texts += [world.canonical_caption(scene), rng.choice(wrong)]
        rows += [len(scenes) + j] * 2
    return texts, rows


def pair_labels(truths: list[str], texts: list[str], rows: list[int]):
    """``(match, own)``: boolean ``(images, texts)`` tables, ``match`` where a text is its image's caption (a
    text made for another image may be right for this one too: scenes repeat), ``own`` where the text was made
    for that image."""
    import torch

    truth = [world.normalise(t) for t in truths]
    said = [world.normalise(t) for t in texts]
    match = torch.tensor([[s == t for s in said] for t in truth])
    own = torch.zeros_like(match)
    own[torch.tensor(rows), torch.arange(len(texts))] = True
    return match, own


def train_filter(model, processor, captioner, recipe: SiglipRecipe, rng: random.Random) -> float:
    """Train ``model`` (``build_filter``'s) on fresh demo pairs and ``captioner``'s mistakes (a ``VlmCaptioner``
    with the demo's sampling settings); returns the seconds taken, the mining of mistakes included."""
    import torch
    from torch.nn import functional as F

    start = time.time()
    image_processor, tokenizer = processor.image_processor, processor.tokenizer
    mistakes = captioner_mistakes(captioner, recipe.mistake_images, rng, image_processor=image_processor)
    if recipe.freeze_vision:
        model.vision_model.requires_grad_(False)
        model.vision_model.head.requires_grad_(True)
        model.vision_model.post_layernorm.requires_grad_(True)

    def loss_fn():
        scenes, images = draw_images(rng, recipe.batch_size)
        picks = recipe.mistakes_per_batch if mistakes else 0
        picked = [mistakes[rng.randrange(len(mistakes))] for _ in range(picks)]
        pixel_values = image_processor(images=images, return_tensors="pt").pixel_values
        if picked:
            pixel_values = torch.cat([pixel_values, torch.stack([p[1] for p in picked])])
        texts, rows = filter_texts(scenes, picked, recipe.negatives, rng)
        truths = [world.canonical_caption(s) for s in scenes] + [world.canonical_caption(p[0]) for p in picked]
        ids = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").input_ids
        images_out = F.normalize(model.get_image_features(pixel_values=pixel_values).pooler_output.float(), dim=-1)
        texts_out = F.normalize(model.get_text_features(input_ids=ids).pooler_output.float(), dim=-1)
        logits = images_out @ texts_out.T * model.logit_scale.exp() + model.logit_bias
        match, own = pair_labels(truths, texts, rows)
        parts = [F.softplus(-logits[match]), F.softplus(logits[own & ~match]), F.softplus(logits[~own & ~match])]
        loss = sum(part.mean() for part in parts if part.numel()) / 3
        accuracy = ((logits > 0) == match)[own].float().mean().item()
        return loss, accuracy

    optimise(model, loss_fn, recipe.steps, recipe.lr, "siglip", bfloat16=recipe.bfloat16)
    model.requires_grad_(True)
    return time.time() - start

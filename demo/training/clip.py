"""The demo CLIP (``models/embedded/clip``): a tiny ``CLIPModel`` trained from scratch with CLIP's symmetric InfoNCE
on demo-world pairs, by the project's one contrastive trainer (``demo.contrastive.fit``).

Its tokenizer is the embedded BLIP checkpoints' own word-level one, read from the filter's directory, so the three
demo models split captions the same way. Images come through the pipeline's decoder and the model's own
``CLIPImageProcessor`` (kept as uint8 until a batch is drawn: a float copy of the training set would not fit the
memory a CPU demo should need).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .. import contrastive, world
from . import tiny
from .build import IMAGE_SIZE, PATCH_SIZE, sincos_positions
from .data import draw_images

# Narrower and shallower than the BLIP towers: it only has to embed, not caption or read words against patches,
# and on the shared 2-core machine each step of a contrastive batch costs about four times less.
CLIP_HIDDEN = 64
CLIP_LAYERS = 2


@dataclass(frozen=True)
class ClipRecipe:
    """How the demo CLIP is trained.

    Args:
        steps: optimiser steps.
        batch_size: pairs per step; every other pair of the batch is a negative.
        lr: peak AdamW learning rate (``contrastive.fit``'s warm-up and cosine schedule).
        pairs: fresh demo images (each with its one caption) drawn once before training.
        bfloat16: train under bfloat16 autocast.
    """

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    pairs: int = 8192
    bfloat16: bool = True


class ClipEncoders(nn.Module):
    """A ``CLIPModel`` as ``contrastive.fit`` trains it: uint8 pixels (``clip_pixels``) rescaled and normalised as
    its image processor does, and token ids whose padding is the tokenizer's pad id.

    Args:
        model: the ``CLIPModel``.
        processor: its ``CLIPProcessor``.
    """

    def __init__(self, model, processor):
        super().__init__()
        self.model = model
        image_processor = processor.image_processor
        self.rescale = image_processor.rescale_factor
        self.mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
        self.pad_id = processor.tokenizer.pad_token_id

    @property
    def logit_scale(self):
        return self.model.logit_scale

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        pixel_values = (pixels.float() * self.rescale - self.mean) / self.std
        return F.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)

    def encode_texts(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        width = int(mask.sum(1).max())  # no work on columns that are padding everywhere
        features = self.model.get_text_features(input_ids=ids[:, :width], attention_mask=mask[:, :width].long())
        return F.normalize(features.pooler_output, dim=-1)


def clip_pixels(processor, images: list) -> torch.Tensor:
    """``images`` resized and cropped by ``processor``'s image processor, still uint8 (``ClipEncoders`` does the
    rescaling and normalisation)."""
    resized = processor.image_processor(images, do_rescale=False, do_normalize=False, return_tensors="pt")
    return resized["pixel_values"].to(torch.uint8)


def build_clip(tokenizer_dir: Path, seed: int):
    """A fresh tiny ``CLIPModel`` and its ``CLIPProcessor`` seeing the BLIP towers' images and patches, with the
    tokenizer saved in ``tokenizer_dir`` (the embedded filter's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    torch.manual_seed(seed)
    model, processor = tiny.build_clip(
        tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden=CLIP_HIDDEN, layers=CLIP_LAYERS
    )
    embeddings = model.vision_model.embeddings
    with torch.no_grad():
        # The BLIP towers' reason (build.build_models): half of a caption is where things are.
        embeddings.position_embedding.weight.copy_(sincos_positions(*embeddings.position_embedding.weight.shape)[0])
    return model, processor


def clip_pairs(processor, pairs: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` fresh demo images (``clip_pixels``) and their canonical captions' token ids, padded with the
    pad id to the longest."""
    pixels, captions = [], []
    for start in range(0, pairs, 512):
        scenes, images = draw_images(rng, min(512, pairs - start))
        pixels.append(clip_pixels(processor, images))
        captions += [world.canonical_caption(scene) for scene in scenes]
    ids = processor.tokenizer(captions, padding="longest", return_tensors="pt")["input_ids"]
    return torch.cat(pixels), ids


def train_clip(tokenizer_dir: Path, seed: int, recipe: ClipRecipe):
    """The demo CLIP trained on fresh pairs (its own random streams, seeded by ``seed``); returns ``(model,
    processor, seconds)``, the seconds counting the drawing of the pairs."""
    start = time.time()
    model, processor = build_clip(tokenizer_dir, seed + 2)
    images, ids = clip_pairs(processor, recipe.pairs, random.Random(f"capfilt-train-clip/{seed}"))
    encoders = ClipEncoders(model, processor)
    contrastive.fit(encoders, images, ids, recipe.steps, recipe.batch_size, recipe.lr, seed, recipe.bfloat16)
    return model.eval(), processor, time.time() - start


def save_clip(directory: Path, model, processor) -> None:
    """Save the CLIP and its processor as ``DualEncoder.from_pretrained`` loads them."""
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)

"""The ITC head of the demo filter: BLIP's ``vision_proj`` and ``text_proj``, trained with CLIP's symmetric InfoNCE
(``demo.contrastive.fit``) on frozen features, so that ``similarity.model: itc`` means something on the demo.

Only the two projections train. Their inputs are the vision tower's first token and the unimodal text encoder's
first token (no image attended), which is what ``models.similarity.ItcSimilarity`` projects; the ITM forward never
reads either projection, so the filter's decisions stay exactly as they were. ``train_itc`` checks that: every
other tensor of the model is left bit for bit as it found it.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ...models.itm import ItmScorer
from .. import contrastive, world
from .data import draw_images

# The ITC head's tensors; everything else in the checkpoint is what the ITM pass uses.
PROJECTIONS = ("vision_proj.", "text_proj.")


@dataclass(frozen=True)
class ItcRecipe:
    """How the ITC projections are trained.

    Args:
        steps: optimiser steps.
        batch_size: pairs per step.
        lr: peak AdamW learning rate.
        pairs: fresh demo images (each with its one caption) whose frozen features are computed once.
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-2
    pairs: int = 8192


class ItcProjections(nn.Module):
    """The ITC head of a ``BlipForImageTextRetrieval`` as ``contrastive.fit`` trains it: its own ``vision_proj``
    and ``text_proj`` (trained in place) over precomputed first-token states, and a training-only temperature
    (BLIP's ``temp``; the Hugging Face model keeps none, cosines need none).

    Args:
        model: the ``BlipForImageTextRetrieval``.
    """

    def __init__(self, model):
        super().__init__()
        self.vision_proj, self.text_proj = model.vision_proj, model.text_proj
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_images(self, states: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision_proj(states), dim=-1)

    def encode_texts(self, states: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(states), dim=-1)


def frozen_features(model, processor, pairs: int, rng: random.Random, batch_size: int = 256):
    """``(vision, text)`` first-token states, ``(pairs, hidden)`` each, of fresh demo images and their captions:
    the vision states as ``ItmScorer.vision_states`` computes them for the pipeline, the text states from the
    unimodal text encoder as ``ItcSimilarity`` reads them."""
    scorer = ItmScorer(model, processor, "cpu", batch_size)
    vision, captions = [], []
    for start in range(0, pairs, batch_size):
        scenes, images = draw_images(rng, min(batch_size, pairs - start))
        vision.append(scorer.vision_states(images)[:, 0, :].clone())
        captions += [world.canonical_caption(scene) for scene in scenes]
    distinct = list(dict.fromkeys(captions))
    states = []
    with torch.no_grad():
        for start in range(0, len(distinct), batch_size):
            tokens = processor.tokenizer(distinct[start : start + batch_size], padding="longest", return_tensors="pt")
            encoded = model.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            states.append(encoded.last_hidden_state[:, 0, :])
    row = {text: i for i, text in enumerate(distinct)}
    return torch.cat(vision), torch.cat(states)[torch.tensor([row[c] for c in captions])]


def train_itc(model, processor, seed: int, recipe: ItcRecipe) -> float:
    """Train ``model``'s ITC projections in place (its own random stream, seeded by ``seed``); returns the seconds
    taken, the features included. Raises if any tensor but the projections changed."""
    start = time.time()
    before = itm_digest(model.state_dict())
    model.eval()  # the frozen towers compute features only; dropout (none in the demo) must not differ per draw
    vision, text = frozen_features(model, processor, recipe.pairs, random.Random(f"capfilt-train-itc/{seed}"))
    torch.manual_seed(seed + 3)
    head = ItcProjections(model)
    contrastive.fit(head, vision, text, recipe.steps, recipe.batch_size, recipe.lr, seed)
    model.eval()
    if itm_digest(model.state_dict()) != before:
        raise RuntimeError("training the ITC projections changed a tensor the ITM head uses")
    return time.time() - start


def itm_digest(tensors) -> str:
    """sha256 over the name, dtype, shape and bytes of every tensor but the ITC projections, in name order: equal
    digests mean the ITM forward computes the same thing. ``tensors`` is a state dict or a safetensors path."""
    if isinstance(tensors, (str, Path)):
        from safetensors.torch import load_file

        tensors = load_file(tensors)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        if name.startswith(PROJECTIONS):
            continue
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

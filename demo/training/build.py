"""The demo models before training: their size, a from-scratch initialisation, and the filter's start from the
trained captioner; and saving them where ``measure.load_models`` and the pipeline load them."""

from __future__ import annotations

import math
from pathlib import Path

from .. import world
from . import tiny

IMAGE_SIZE = 64
PATCH_SIZE = 8
HIDDEN = 128
LAYERS = 4


def build_models(seed: int):
    """A fresh processor, captioner and ITM model of the demo size, initialised from ``seed``."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

    tokenizer = tiny.build_tokenizer(list(world.VOCABULARY))
    processor = tiny.build_processor(tokenizer, IMAGE_SIZE)
    config = tiny.build_config(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden=HIDDEN, layers=LAYERS)
    torch.manual_seed(seed)
    captioner = BlipForConditionalGeneration(config)
    itm = BlipForImageTextRetrieval(config)
    for model in (captioner, itm):
        # BlipVisionConfig initialises position embeddings with std 1e-10, which leaves a from-scratch ViT
        # nearly blind to where things are, and left/right/top/bottom is half of this world. From a random
        # start the captioner learned "left" and "top" but confused "right" with "bottom" (0.5 each) even
        # after 4000 steps; a 2-D sine-cosine start (as in MAE) gives x and y as separate features and fixes it.
        embeddings = model.vision_model.embeddings
        with torch.no_grad():
            embeddings.position_embedding.copy_(sincos_positions(*embeddings.position_embedding.shape[1:]))
        torch.nn.init.trunc_normal_(embeddings.class_embedding, std=0.02)
    return processor, captioner, itm


def sincos_positions(positions: int, dim: int):
    """A ``(1, positions, dim)`` table: zeros for the class token, then for each patch of the square grid
    sines and cosines of its row (first half of ``dim``) and column (second half) at geometric frequencies."""
    import torch

    side = math.isqrt(positions - 1)
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij"
    )

    def encode(coordinate):
        angles = coordinate.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.zeros(1, positions, dim)
    table[0, 1:, : 4 * quarter] = torch.cat([encode(rows), encode(cols)], dim=1)
    return table


def init_filter_from_captioner(itm, captioner) -> None:
    """Start the filter from the trained captioner, the way BLIP starts both from one pre-trained MED model.

    In BLIP the image-grounded text encoder and decoder share everything but self-attention; here the
    captioner's decoder (``text_decoder.bert``: embeddings, and per layer self-attention, cross-attention and
    feed-forward) initialises the filter's text encoder whole, parameter names matching one to one. The
    decoder's self-attention was causal, the encoder's is bidirectional: a starting point only, the ITM
    fine-tuning adapts it. The vision tower is copied as well; the ITM head starts fresh.
    """
    itm.vision_model.load_state_dict(captioner.vision_model.state_dict())
    missing, unexpected = itm.text_encoder.load_state_dict(captioner.text_decoder.bert.state_dict(), strict=False)
    if unexpected or any(not name.startswith("pooler") for name in missing):
        raise ValueError(f"captioner and filter text towers differ: missing {missing}, unexpected {unexpected}")


def save_models(directory: Path, processor, captioner, itm) -> None:
    """Save both models with their processor as safetensors under ``directory/{captioner,itm}``."""
    for name, model in (("captioner", captioner), ("itm", itm)):
        model.save_pretrained(directory / name, safe_serialization=True)
        processor.save_pretrained(directory / name)

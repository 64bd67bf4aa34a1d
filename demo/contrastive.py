"""A small CLIP-style dual encoder, trained from scratch with symmetric InfoNCE and a learned temperature.

One trainer, whatever the data: the retrieval evaluation trains it on a run's kept samples and on each row of
BLIP's Table 1 (images, or clips: CLIP4Clip's meanP, the image tower shared by every frame and the frames'
normalised embeddings averaged), and a demo CLIP can train it on demo-world pairs. The caller hands over image
pixels and token ids; training runs a fixed number of steps of a fixed batch size, so every input is seen for the
same number of samples (DataComp's rule) and runs with the same config and seed differ only by their data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

PAD, UNK = "[PAD]", "[UNK]"


@dataclass(frozen=True)
class ContrastiveConfig:
    """How the dual encoder is built and trained.

    Args:
        steps: optimiser steps; with ``batch_size`` they fix the samples seen, whatever the data set's size.
        batch_size: pairs per step; every other pair of the batch is a negative.
        lr: peak AdamW learning rate (linear warm-up over 5% of the steps, then cosine decay to zero).
        image_size: the side images are resized to before the image tower.
        width: the towers' width and the embedding size.
        text_layers: transformer layers of the text tower.
        max_tokens: words per text; longer texts are cut.
        seed: initialisation and the order of batches.
        frames: frames per clip, for video (``clip_pixels``).
    """

    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    image_size: int = 64
    width: int = 128
    text_layers: int = 2
    max_tokens: int = 32
    seed: int = 0
    frames: int = 4

    def __post_init__(self):
        for name in ("steps", "batch_size", "image_size", "width", "text_layers", "max_tokens", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (four stride-2 convolutions), got {self.image_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be above 0, got {self.lr}")


class WordTokenizer:
    """Lower-cased words to ids over a fixed vocabulary; id 0 pads, id 1 stands for any word outside it.

    Args:
        vocabulary: the known words.
    """

    def __init__(self, vocabulary):
        self.words = [PAD, UNK, *sorted(set(vocabulary))]
        self.ids = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        """A ``(len(texts), max_tokens)`` tensor of ids, padded with 0; a text with no word is one [UNK]."""
        ids = torch.zeros(len(texts), max_tokens, dtype=torch.long)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())[:max_tokens] or [UNK]
            ids[row, : len(words)] = torch.tensor([self.ids.get(w, 1) for w in words])
        return ids


def pixels(images, size: int) -> torch.Tensor:
    """PIL images as a ``(n, 3, size, size)`` uint8 tensor, resized with antialiasing (kept small in memory:
    a trainer's data set is decoded once and drawn from many times)."""
    arrays = [
        torch.frombuffer(bytearray(im.convert("RGB").resize((size, size)).tobytes()), dtype=torch.uint8)
        for im in images
    ]
    if not arrays:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack(arrays).reshape(len(arrays), size, size, 3).permute(0, 3, 1, 2).contiguous()


def clip_pixels(clips, frames: int, size: int) -> torch.Tensor:
    """Clips (each a list of PIL frames in time order) as a ``(n, frames, 3, size, size)`` uint8 tensor: a clip
    of ``frames`` or more gives ``frames`` of them spread evenly; a shorter one repeats each of its frames in turn,
    so a clip's mean over its frames weighs them (to within one repeat) equally."""
    chosen = [[clip[(2 * i + 1) * len(clip) // (2 * frames)] for i in range(frames)] for clip in clips]
    flat = pixels([frame for clip in chosen for frame in clip], size)
    return flat.reshape(len(chosen), frames, 3, size, size)


class ImageTower(nn.Module):
    """Four stride-2 convolutions, then a linear map of the whole feature grid: flattening rather than pooling
    keeps where things are, which half of a demo caption is about."""

    def __init__(self, image_size: int, width: int):
        super().__init__()
        channels = (3, 16, 32, 64, 128)
        layers = []
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        grid = image_size // 16
        self.project = nn.Linear(channels[-1] * grid * grid, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 - 0.5
        return self.project(self.features(x).flatten(1))


class TextTower(nn.Module):
    """Word and position embeddings through a small transformer encoder, mean-pooled over the words."""

    def __init__(self, vocabulary_size: int, width: int, layers: int, max_tokens: int):
        super().__init__()
        self.embed = nn.Embedding(vocabulary_size, width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(max_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.project = nn.Linear(width, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : max(1, int((ids != 0).sum(1).max()))]  # no work on columns that are padding everywhere
        padding = ids == 0
        x = self.encoder(self.embed(ids) + self.positions[: ids.shape[1]], src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).float()
        return self.project((x * keep).sum(1) / keep.sum(1).clamp(min=1.0))


class DualEncoder(nn.Module):
    """An image tower and a text tower into one space of L2-normalised embeddings, and CLIP's learned
    temperature (``logit_scale``, started at 1/0.07 and capped at 100)."""

    def __init__(self, config: ContrastiveConfig, vocabulary_size: int):
        super().__init__()
        self.image_tower = ImageTower(config.image_size, config.width)
        self.text_tower = TextTower(vocabulary_size, config.width, config.text_layers, config.max_tokens)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(n, 3, s, s)``, or clips ``(n, frames, 3, s, s)``: each frame through the image tower and
        normalised, the mean over a clip's frames normalised again (CLIP4Clip's meanP, as the pipeline pools)."""
        if images.dim() == 5:
            frames = F.normalize(self.image_tower(images.flatten(0, 1)), dim=-1)
            return F.normalize(frames.view(*images.shape[:2], -1).mean(1), dim=-1)
        return F.normalize(self.image_tower(images), dim=-1)

    def encode_texts(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_tower(ids), dim=-1)


def info_nce(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss: cross-entropy of each image over the batch's texts and of each text over its
    images, the pair on the diagonal being the match."""
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_embeds @ text_embeds.T
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def batch_order(size: int, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``(steps, batch_size)`` indices into a data set of ``size`` pairs: shuffled epochs laid end to end, so
    each pair is seen as often as any other (to within one) and the samples seen do not depend on ``size``."""
    epochs = -(-steps * batch_size // size)
    order = torch.cat([torch.randperm(size, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size)


def train(images: torch.Tensor, ids: torch.Tensor, vocabulary_size: int, config: ContrastiveConfig) -> DualEncoder:
    """A ``DualEncoder`` trained from scratch on the pairs ``(images[i], ids[i])``.

    Args:
        images: ``(n, 3, image_size, image_size)`` uint8 pixels (``pixels``).
        ids: ``(n, max_tokens)`` token ids (``WordTokenizer.encode``).
        vocabulary_size: the tokenizer's size.
        config: the model and the training run.
    """
    if len(images) != len(ids) or len(images) == 0:
        raise ValueError(f"need as many images as texts, at least one: got {len(images)} and {len(ids)}")
    torch.manual_seed(config.seed)
    model = DualEncoder(config, vocabulary_size)
    return fit(model, images, ids, config.steps, config.batch_size, config.lr, config.seed)


def fit(model: nn.Module, images, texts, steps: int, batch_size: int, lr: float, seed: int, autocast=False):
    """Train ``model`` in place with symmetric InfoNCE on the pairs ``(images[i], texts[i])`` and return it in
    eval mode.

    ``model`` is any module with ``encode_images``, ``encode_texts`` (L2-normalised rows) and ``logit_scale``; its
    trainable parameters are the ones the optimiser sees, so a model that wraps a few layers of a bigger one
    trains only those. ``images`` and ``texts`` are whatever the two encoders take, indexed by a tensor of rows.

    Args:
        steps, batch_size: optimiser steps and pairs per step (``batch_order``).
        lr: peak AdamW learning rate (linear warm-up over 5% of the steps, then cosine decay to zero).
        seed: the order of batches (initialisation is the caller's).
        autocast: run the forward under CPU bfloat16 autocast (weights and optimiser stay float32).
    """
    order = batch_order(len(images), steps, batch_size, torch.Generator().manual_seed(seed))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    warm = max(1, steps // 20)
    model.train()
    for step, batch in enumerate(order):
        progress = max(0.0, (step - warm) / max(1, steps - warm))
        factor = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimiser.param_groups:
            group["lr"] = lr * factor
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = info_nce(model.encode_images(images[batch]), model.encode_texts(texts[batch]), model.logit_scale)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def embed(model: DualEncoder, images: torch.Tensor, ids: torch.Tensor, batch_size: int = 256):
    """L2-normalised ``(image embeddings, text embeddings)`` of a trained model, in batches."""
    image_embeds = torch.cat(
        [model.encode_images(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )
    text_embeds = torch.cat([model.encode_texts(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])
    return image_embeds, text_embeds

"""The two training loops: the captioner's teacher-forced captions, then the filter's ITM head with its
word-level, masked-word and mined-negative signals; and the optimiser loop they share."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from ...models.itm import grounded_text_states, match_logits
from .. import world
from .data import caption_batch, draw_images, filter_texts, mask_words, word_targets

# Share of each true caption's words the filter's masked-word loss hides (BERT and ALBEF mask 15% of tokens;
# these captions are short and nearly half their words are the template's "a", "on" and "the").
MASK_RATE = 0.25


def schedule(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to zero."""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def optimise(model, loss_fn, steps: int, lr: float, name: str, helper=None, bfloat16: bool = False) -> float:
    """Run ``steps`` AdamW steps of ``loss_fn() -> (loss, accuracy)`` over ``model``'s parameters and those of
    ``helper`` (a training-only module, not saved), logging 20 times; returns the seconds taken.

    With ``bfloat16`` the forward pass runs under CPU autocast (matmuls in bfloat16, weights, gradients and
    optimiser state in float32): 1.7x faster per step on this project's CPU, which has native bfloat16
    (avx512_bf16); a CPU without it emulates bfloat16 and gains nothing."""
    import torch

    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    if helper is not None:
        parameters += list(helper.parameters())
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    log_every = max(1, steps // 20)
    start = time.time()
    recent: list[tuple[float, float]] = []
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = schedule(step, steps, lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss, accuracy = loss_fn()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        recent.append((loss.item(), accuracy))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            mean_loss, mean_acc = (sum(values) / len(recent) for values in zip(*recent))
            print(
                f"[{name}] step {step + 1}/{steps} loss {mean_loss:.4f} acc {mean_acc:.4f} {time.time() - start:.0f}s",
                flush=True,
            )
            recent.clear()
    model.eval()
    return time.time() - start


def train_captioner(
    model, processor, steps: int, batch_size: int, lr: float, rng: random.Random, bfloat16: bool = False
) -> float:
    """Train ``model`` (``BlipForConditionalGeneration``) for ``steps``, under bfloat16 autocast with
    ``bfloat16``; returns the seconds taken."""

    def loss_fn():
        pixel_values, input_ids, attention_mask, labels = caption_batch(processor, rng, batch_size)
        out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        return out.loss, next_token_accuracy(out.logits, labels)

    return optimise(model, loss_fn, steps, lr, "captioner", bfloat16=bfloat16)


def next_token_accuracy(logits, labels) -> float:
    """The share of labelled tokens a captioner predicts right from the tokens before them (labels -100 are
    not counted; the model shifts labels by one, so this does too)."""
    targets = labels[:, 1:]
    mask = targets != -100
    right = (logits[:, :-1].argmax(-1) == targets) & mask
    return right.sum().item() / max(1, mask.sum().item())


@dataclass(frozen=True)
class FilterRecipe:
    """What the filter trains on besides each image's caption (see ``train_itm``).

    Args:
        negatives: generated wrong captions per image.
        mistakes_per_batch: images per batch with one of the captioner's own wrong captions.
        word_loss: weight of the per-word agreement loss (0: off).
        mlm_loss: weight of the grounded masked-word loss (0: off).
        mined: make one wrong caption per image the hardest one-factor change.
        bfloat16: train under bfloat16 autocast.
    """

    negatives: int = 2
    mistakes_per_batch: int = 0
    word_loss: float = 0.0
    mlm_loss: float = 0.0
    mined: bool = False
    bfloat16: bool = False


def train_itm(
    model, processor, steps: int, batch_size: int, lr: float, rng: random.Random, recipe: FilterRecipe, mistakes=None
) -> float:
    """Train ``model`` (``BlipForImageTextRetrieval``) on the ITM head: per image its caption and
    ``recipe.negatives`` wrong ones, the classes weighted to balance; returns the seconds taken.

    With ``recipe.mined``, one of each image's wrong captions is its hardest one-factor change
    (``hardest_changes``). With ``mistakes`` (``captioner_mistakes``), each batch also holds
    ``recipe.mistakes_per_batch`` of those images with their caption and one of the captioner's wrong captions
    for it. With ``recipe.word_loss`` > 0, a training-only linear head also classifies every token as agreeing
    with the image or not (``word_targets``): where a wrong caption is wrong is known here, and telling the
    encoder so grounds each word far sooner than the one bit per caption of the ITM head does. With
    ``recipe.mlm_loss`` > 0, each image's true caption is also encoded with words masked (``mask_words``) and a
    training-only head predicts them from the image: it teaches the encoder what the image says at each slot,
    which is what the per-word and ITM heads then compare against."""
    import torch

    tokenizer = processor.tokenizer
    hidden_size = model.config.text_config.hidden_size
    word_head = torch.nn.Linear(hidden_size, 2) if recipe.word_loss > 0 else None
    mlm_head = torch.nn.Linear(hidden_size, model.config.text_config.vocab_size) if recipe.mlm_loss > 0 else None
    helpers = torch.nn.ModuleList([h for h in (word_head, mlm_head) if h is not None])

    def loss_fn():
        scenes, images = draw_images(rng, batch_size)
        picks = recipe.mistakes_per_batch if mistakes else 0
        picked = [mistakes[rng.randrange(len(mistakes))] for _ in range(picks)]
        pixel_values = processor(images=images, return_tensors="pt").pixel_values
        if picked:
            pixel_values = torch.cat([pixel_values, torch.stack([p[1] for p in picked])])
        image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
        hard = hardest_changes(model, tokenizer, scenes, image_embeds[:batch_size], rng) if recipe.mined else None
        captions = [world.canonical_caption(scene) for scene in scenes]
        texts, truths, index, targets = filter_texts(scenes, captions, hard, picked, recipe.negatives, rng)
        encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        pairs = image_embeds[torch.tensor(index)]
        hidden = grounded_text_states(model, pairs, encoded.input_ids, encoded.attention_mask)
        logits = match_logits(model, hidden)
        target = torch.tensor(targets)
        loss = balanced_cross_entropy(logits, target)
        if word_head is not None:
            words = word_targets(texts, truths, encoded.input_ids)
            at = words != -100
            loss = loss + recipe.word_loss * balanced_cross_entropy(word_head(hidden[at]), words[at])
        if mlm_head is not None:
            drawn = image_embeds[:batch_size]
            loss = loss + recipe.mlm_loss * masked_word_loss(model, mlm_head, tokenizer, drawn, captions, rng)
        accuracy = (logits.argmax(-1) == target).float().mean().item()
        return loss, accuracy

    return optimise(model, loss_fn, steps, lr, "itm", helper=helpers, bfloat16=recipe.bfloat16)


def masked_word_loss(model, head, tokenizer, image_embeds, captions: list[str], rng: random.Random):
    """Cross-entropy of ``head`` predicting the words ``mask_words`` hid in each true caption, read by the
    grounded text encoder against that caption's image (``image_embeds``, one row per caption)."""
    import torch

    true = tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
    masked, hidden_words = mask_words(true.input_ids, true.attention_mask, tokenizer.mask_token_id, MASK_RATE, rng)
    states = grounded_text_states(model, image_embeds, masked, true.attention_mask)
    at = hidden_words != -100
    return torch.nn.functional.cross_entropy(head(states[at]), hidden_words[at])


def balanced_cross_entropy(logits, target):
    """Cross-entropy over classes 0/1 with the rarer class weighted up to balance the two."""
    import torch

    positives = int(target.sum())
    negatives = len(target) - positives
    weight = torch.tensor([positives / max(1, negatives), 1.0]) if negatives and positives else None
    return torch.nn.functional.cross_entropy(logits, target, weight=weight)


def hardest_changes(model, tokenizer, scenes: list[world.Scene], image_embeds, rng: random.Random) -> list[str]:
    """Per scene, the caption of a one-factor change (one drawn per ``world.FACTORS``) that the filter, as it
    is now, scores most like a match: the near miss it is currently worst at, mined the way BLIP mines its
    hard negatives by the model's own similarity. Which confusions are hard (top for left, circle for square)
    is found by the model, not written into the generator. ``image_embeds`` holds one row per scene."""
    import torch

    factors = len(world.FACTORS)
    texts = [world.canonical_caption(world.perturb_scene(s, rng, f)) for s in scenes for f in world.FACTORS]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    repeated = image_embeds.detach().repeat_interleave(factors, dim=0)
    with torch.no_grad():
        logits = match_logits(model, grounded_text_states(model, repeated, encoded.input_ids, encoded.attention_mask))
    hardest = (logits[:, 1] - logits[:, 0]).view(len(scenes), factors).argmax(1).tolist()
    return [texts[i * factors + f] for i, f in enumerate(hardest)]

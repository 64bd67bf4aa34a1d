"""The model card, ``README.md`` next to the trained models: how they were made and what they measure.

``models/embedded/README.md`` is this card as the shipped run wrote it, plus one hand-written line on how that
run was made; retraining rewrites all of it but that line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import world
from ..measure import MAX_NEW_TOKENS, MIN_NEW_TOKENS, NUM_CAPTIONS, THRESHOLD, TOP_P, format_metrics
from .build import HIDDEN, IMAGE_SIZE, LAYERS, PATCH_SIZE
from .clip import CLIP_HIDDEN, CLIP_LAYERS

COMMAND = "python -m capfilt.demo.training"


def write_model_card(directory: Path, args: argparse.Namespace, seconds: dict, metrics: dict | None) -> None:
    """Write ``directory/README.md`` for the models saved under ``directory/{captioner,itm}``.

    Args:
        directory: the training run's output.
        args: the run's parsed command line.
        seconds: ``captioner``, ``itm``, ``itc``, ``clip`` and ``total`` training seconds (a stage the run
            skipped is absent).
        metrics: ``measure.measure_models``'s result, or None when the run measured nothing.
    """
    sizes = {name: model_size(directory / name) for name in ("captioner", "itm", "clip") if (directory / name).is_dir()}
    measured = format_metrics(metrics) if metrics is not None else None
    (directory / "README.md").write_text(model_card(args, seconds, sizes, measured), encoding="utf-8")


def model_size(directory: Path) -> float:
    """The megabytes of a saved model's files."""
    return sum(f.stat().st_size for f in directory.iterdir()) / 1e6


def model_card(args: argparse.Namespace, seconds: dict, sizes: dict, measured: str | None) -> str:
    """The card's text: ``sizes`` in MB per model, ``measured`` the ``format_metrics`` report (None: left out)."""
    lines = _header(sizes) + _command(args, seconds) + _recipe(args) + _contrastive(args)
    lines += [
        "",
        f"Recommended settings: prompt `{world.PROMPT}`, num_captions {NUM_CAPTIONS}, top_p {TOP_P}, "
        f"min_length {MIN_NEW_TOKENS}, max_length {MAX_NEW_TOKENS} (new tokens), threshold {THRESHOLD}.",
    ]
    if measured is not None:
        lines += ["", "## Measured on fresh demo data", "", "```", measured, "```"]
    return "\n".join(lines) + "\n"


def _header(sizes: dict) -> list[str]:
    return [
        "# capfilt demo models",
        "",
        "A tiny BLIP captioner (`BlipForConditionalGeneration`) and a separate tiny BLIP ITM filter",
        "(`BlipForImageTextRetrieval`, whose ITC head serves `similarity.model: itc`), and a tiny CLIP",
        "(`CLIPModel`, `embedded:clip`), trained from scratch on CPU on the procedural demo world",
        "(`demo/world.py`: one or two coloured shapes of two sizes at a position on a coloured",
        "background, one canonical caption per image). They know nothing outside that world.",
        "",
        f"- images {IMAGE_SIZE} px, patch {PATCH_SIZE}, hidden {HIDDEN}, {LAYERS} layers per tower (CLIP: hidden "
        f"{CLIP_HIDDEN}, {CLIP_LAYERS} layers); word-level vocabulary of {len(world.VOCABULARY)} words, one "
        "tokenizer for all three",
        "- size: " + ", ".join(f"{name} {size:.1f} MB" for name, size in sizes.items()) + " (safetensors, fp32)",
    ]


def _flag(name: str, on: bool) -> str:
    return f"--{'' if on else 'no-'}{name}"


def _command(args: argparse.Namespace, seconds: dict) -> list[str]:
    """The one command that reproduces the run, and where its seconds went."""
    options = (
        f"--output {args.output} --seed {args.seed} --caption-steps {args.caption_steps} --itm-steps {args.itm_steps} "
        f"--batch-size {args.batch_size} --lr {args.lr} --itm-lr {args.itm_lr} --itm-negatives {args.itm_negatives} "
        f"--itm-mistake-images {args.itm_mistake_images} --itm-mistakes-per-batch {args.itm_mistakes_per_batch} "
        f"--itm-word-loss {args.itm_word_loss} --itm-mlm-loss {args.itm_mlm_loss} "
        f"{_flag('itm-freeze-vision', args.itm_freeze_vision)} {_flag('itm-mined', args.itm_mined)} "
        f"--itc-steps {args.itc_steps} --itc-batch-size {args.itc_batch_size} --itc-lr {args.itc_lr} "
        f"--itc-pairs {args.itc_pairs} --clip-steps {args.clip_steps} --clip-batch-size {args.clip_batch_size} "
        f"--clip-lr {args.clip_lr} --clip-pairs {args.clip_pairs} {_flag('bfloat16', args.bfloat16)}"
    )
    autocast = ", bfloat16 autocast: matmuls in bfloat16, weights and optimiser in float32" if args.bfloat16 else ""
    stages = ", ".join(f"{name} {seconds[name]:.0f}" for name in ("captioner", "itm", "itc", "clip") if name in seconds)
    return [
        f"- command (one run, {seconds['total']:.0f} s of training on 2 CPU threads): `{COMMAND} {options}`; "
        "the filter stage alone reruns on a saved captioner with `--captioner-from DIR`, the ITC head and the CLIP "
        "alone on a saved captioner and filter with `--filter-from DIR` (each stage has its own seeded random "
        "streams, independent of how the models before it were trained)",
        f"- seconds: {stages}, total {seconds['total']:.0f} (2 CPU threads{autocast})",
    ]


def _recipe(args: argparse.Namespace) -> list[str]:
    """What each model was trained on, the filter's optional signals only when the run used them."""
    lines = [
        "- vision towers start from 2-D sine-cosine patch positions: from a random start the captioner told left",
        "  from right but confused right with bottom",
        '- captioner: teacher-forced on "a picture of " + caption, loss on the caption tokens only',
        "- filter: initialised the BLIP way from the trained captioner (vision tower, and the text decoder's",
        "  embeddings, self-attention, cross-attention and feed-forward into the text encoder; fresh ITM head),",
        f"  then trained on the ITM head with each image's caption and {args.itm_negatives} generated wrong ones "
        "(one or two",
        "  words off, objects swapped, partial, truncated, other images' captions, boilerplate, word salad)",
        f"  plus, per batch, {args.itm_mistakes_per_batch} images with one of the captioner's own wrong samples "
        f"(from {args.itm_mistake_images} images",
        "  captioned before the filter trains); classes weighted to balance",
        f"- filter, also: a per-word loss (weight {args.itm_word_loss}) on whether each word of an aligned caption "
        "agrees with the image,",
        "  through a training-only head"
        + ("; the vision tower copied from the captioner is kept frozen" if args.itm_freeze_vision else ""),
    ]
    if args.itm_mlm_loss > 0:
        lines += [
            f"- filter, grounded masked words (weight {args.itm_mlm_loss}): each image's true caption is also encoded",
            "  with a quarter of its words masked, and a training-only head predicts them from the image (ALBEF/BLIP",
            "  MLM). It shortens the stretch where the filter sits near chance on one-word changes: training",
            "  accuracy 0.71 at step 800 and 0.88 at 1200 with it, 0.61 and 0.66 without (seed 0, same captioner)",
        ]
    if args.itm_mined:
        lines += [
            "- filter, mined negatives: one of each image's wrong captions is, of one change per factor (colour,",
            "  shape, size, position, background), the one the filter scores highest at that step; the model finds",
            "  its own confusions (top for left, circle for square) instead of a fixed mix of noise",
        ]
    return lines


def _contrastive(args: argparse.Namespace) -> list[str]:
    """How the two similarity models were trained, when the run trained them."""
    lines = []
    if args.itc_steps:
        lines += [
            "- ITC head (`similarity.model: itc`): only the filter's `vision_proj` and `text_proj` train, with CLIP's",
            f"  symmetric InfoNCE and a training-only temperature, {args.itc_steps} steps of {args.itc_batch_size} "
            f"pairs over {args.itc_pairs} fresh images, on the frozen",
            "  vision tower's and unimodal text encoder's first tokens; the ITM forward reads neither projection, and",
            "  the trainer checks every other tensor is left bit for bit as it was, so the filter's decisions do not move",
        ]
    if args.clip_steps:
        lines += [
            f"- CLIP (`embedded:clip`): from scratch, CLIP's symmetric InfoNCE with its learned temperature, "
            f"{args.clip_steps} steps of {args.clip_batch_size}",
            f"  pairs over {args.clip_pairs} fresh images (each with its canonical caption), by the one contrastive "
            "trainer (`demo/contrastive.py`);",
            "  vision tower started from 2-D sine-cosine positions as the BLIP towers; pools text at `[SEP]`",
        ]
    return lines

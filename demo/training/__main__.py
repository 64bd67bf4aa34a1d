"""Train the embedded demo models from scratch on the demo world: a tiny BLIP captioner and ITM filter, the
filter's ITC head, and a tiny CLIP.

python -m capfilt.demo.training --output models/embedded     # train all, measure, write the model card
python -m capfilt.demo.training --output models/embedded --evaluate-only
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from ..measure import (
    NUM_CAPTIONS,
    THRESHOLD,
    TOP_P,
    demo_captioner,
    format_metrics,
    load_models,
    load_similarities,
    measure_models,
)
from .build import build_models, init_filter_from_captioner, save_models
from .card import write_model_card
from .clip import ClipRecipe, save_clip, train_clip
from .data import captioner_mistakes
from .itc import ItcRecipe, train_itc
from .loops import FilterRecipe, train_captioner, train_itm
from .record import read_record, write_record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--steps`` sets both stages' steps."""
    parser = argparse.ArgumentParser(prog="python -m capfilt.demo.training", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="models/embedded", help="directory for captioner/ and itm/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="set both --caption-steps and --itm-steps (quick runs)")
    parser.add_argument("--caption-steps", type=int, default=4000)
    parser.add_argument("--itm-steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--itm-lr", type=float, default=1e-3, help="the filter diverges at the captioner's rate")
    parser.add_argument("--itm-negatives", type=int, default=2, help="generated wrong captions per image")
    parser.add_argument(
        "--itm-mistake-images",
        type=int,
        default=512,
        help="fresh images the trained captioner captions before the filter trains; its wrong "
        "captions become extra negatives",
    )
    parser.add_argument("--itm-mistakes-per-batch", type=int, default=8)
    parser.add_argument(
        "--itm-word-loss", type=float, default=1.0, help="weight of the filter's per-word agreement loss"
    )
    parser.add_argument(
        "--itm-mlm-loss", type=float, default=1.0, help="weight of the filter's grounded masked-word loss"
    )
    on_off = argparse.BooleanOptionalAction
    parser.add_argument(
        "--itm-freeze-vision",
        action=on_off,
        default=True,
        help="keep the vision tower copied from the captioner fixed",
    )
    parser.add_argument(
        "--itm-mined",
        action=on_off,
        default=True,
        help="make one of each image's wrong captions the one-factor change the filter currently scores highest",
    )
    parser.add_argument(
        "--bfloat16",
        action=on_off,
        default=True,
        help="train under bfloat16 autocast (float32 weights); --no-bfloat16 on a CPU without native bfloat16",
    )
    parser.add_argument("--itc-steps", type=int, default=ItcRecipe.steps, help="the filter's ITC head; 0 skips")
    parser.add_argument("--itc-batch-size", type=int, default=ItcRecipe.batch_size)
    parser.add_argument("--itc-lr", type=float, default=ItcRecipe.lr)
    parser.add_argument("--itc-pairs", type=int, default=ItcRecipe.pairs, help="fresh images the ITC head trains on")
    parser.add_argument("--clip-steps", type=int, default=ClipRecipe.steps, help="the demo CLIP; 0 skips")
    parser.add_argument("--clip-batch-size", type=int, default=ClipRecipe.batch_size)
    parser.add_argument("--clip-lr", type=float, default=ClipRecipe.lr)
    parser.add_argument("--clip-pairs", type=int, default=ClipRecipe.pairs, help="fresh images the CLIP trains on")
    parser.add_argument("--captioner-from", help="reuse the trained captioner in this demo-model directory")
    parser.add_argument(
        "--filter-from",
        help="reuse the trained captioner and ITM filter in this demo-model directory (train the ITC head and CLIP)",
    )
    parser.add_argument("--eval-samples", type=int, default=256, help="fresh samples to measure on; 0 skips")
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--evaluate-only", action="store_true", help="measure the models already in --output")
    parser.add_argument("--num-captions", type=int, default=NUM_CAPTIONS, help="synthetic captions per image")
    parser.add_argument("--top-p", type=float, default=TOP_P)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    args = parser.parse_args(argv)
    if args.steps is not None:
        args.caption_steps = args.itm_steps = args.steps
    if args.filter_from:
        args.captioner_from = args.filter_from
    return args


def main(argv: list[str] | None = None) -> int:
    """Train (or with ``--evaluate-only`` only measure), save, measure and write the model card."""
    import torch

    args = parse_args(argv)
    torch.set_num_threads(2)
    output = Path(args.output)
    if args.evaluate_only:
        print(format_metrics(measure(output, args)))
        return 0
    processor, captioner, itm = build_models(args.seed)
    captioner, seconds = captioner_stage(args, processor, captioner)
    itm, seconds["itm"] = filter_stage(args, processor, captioner, itm)
    if args.itc_steps:
        recipe = ItcRecipe(args.itc_steps, args.itc_batch_size, args.itc_lr, args.itc_pairs)
        seconds["itc"] = train_itc(itm, processor, args.seed, recipe)
    save_models(output, processor, captioner, itm)
    stages = (
        ("captioner", "caption_steps", args.caption_steps, args.lr),
        ("itm", "itm_steps", args.itm_steps, args.itm_lr),
    )
    for name, key, steps, lr in stages:
        record = {"seed": args.seed, key: steps, "batch_size": args.batch_size, "lr": lr, "bfloat16": args.bfloat16}
        write_record(output / name, **record, seconds=seconds[name])
    if args.clip_steps:
        recipe = ClipRecipe(args.clip_steps, args.clip_batch_size, args.clip_lr, args.clip_pairs, args.bfloat16)
        # The CLIP splits captions as the BLIP pair does: its tokenizer is the one just saved with the filter.
        clip, clip_processor, seconds["clip"] = train_clip(output / "itm", args.seed, recipe)
        save_clip(output / "clip", clip, clip_processor)
    seconds["total"] = sum(seconds.values())
    metrics = measure(output, args) if args.eval_samples > 0 else None
    if metrics is not None:
        print(format_metrics(metrics))
    write_model_card(output, args, seconds, metrics)
    print(f"saved to {output} in {seconds['total']:.0f}s of training")
    return 0


def captioner_stage(args: argparse.Namespace, processor, captioner):
    """The trained captioner and ``{"captioner": seconds}``: trained here on the run's first random stream, or
    with ``--captioner-from`` loaded from an earlier run with the same seed, whose steps and seconds it
    recorded in ``captioner/training.json`` (``args.caption_steps`` takes the recorded steps)."""
    if not args.captioner_from:
        rng = random.Random(f"capfilt-train/{args.seed}")
        steps = args.caption_steps
        seconds = train_captioner(captioner, processor, steps, args.batch_size, args.lr, rng, args.bfloat16)
        return captioner, {"captioner": seconds}
    from transformers import BlipForConditionalGeneration

    source = Path(args.captioner_from) / "captioner"
    captioner = BlipForConditionalGeneration.from_pretrained(source).eval()
    recorded = read_record(source)
    args.caption_steps = recorded.get("caption_steps", args.caption_steps)
    return captioner, {"captioner": float(recorded.get("seconds", 0.0))}


def filter_stage(args: argparse.Namespace, processor, captioner, itm):
    """Initialise ``itm`` from ``captioner`` and train it; returns it and the seconds taken, mining the
    captioner's mistakes included. The stage has its own random streams, so that ``--captioner-from`` reproduces
    the one-command run. With ``--filter-from`` the trained filter is loaded instead, with its recorded steps
    and seconds."""
    import torch

    if args.filter_from:
        from transformers import BlipForImageTextRetrieval

        source = Path(args.filter_from) / "itm"
        recorded = read_record(source)
        args.itm_steps = recorded.get("itm_steps", args.itm_steps)
        return BlipForImageTextRetrieval.from_pretrained(source).eval(), float(recorded.get("seconds", 0.0))

    rng = random.Random(f"capfilt-train-itm/{args.seed}")
    torch.manual_seed(args.seed + 1)
    init_filter_from_captioner(itm, captioner)
    start = time.time()
    mistakes = None
    if args.itm_mistake_images:
        mistakes = captioner_mistakes(demo_captioner(captioner, processor), args.itm_mistake_images, rng)
    if args.itm_freeze_vision:
        # The captioner's vision tower already sees every attribute (it names them); keep it as it is.
        itm.vision_model.requires_grad_(False)
    recipe = FilterRecipe(
        negatives=args.itm_negatives,
        mistakes_per_batch=args.itm_mistakes_per_batch,
        word_loss=args.itm_word_loss,
        mlm_loss=args.itm_mlm_loss,
        mined=args.itm_mined,
        bfloat16=args.bfloat16,
    )
    train_itm(itm, processor, args.itm_steps, args.batch_size, args.itm_lr, rng, recipe, mistakes)
    itm.requires_grad_(True)
    return itm, time.time() - start


def measure(output: Path, args: argparse.Namespace) -> dict:
    """The models saved under ``output``, loaded back by path and measured with the run's settings."""
    captioner, scorer = load_models(output, args.num_captions, args.top_p)
    similarities = load_similarities(output, scorer)
    return measure_models(
        captioner, scorer, args.eval_samples, args.eval_seed, args.threshold, similarities=similarities
    )


if __name__ == "__main__":
    raise SystemExit(main())

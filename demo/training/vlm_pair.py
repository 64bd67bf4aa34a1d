"""Train the demo-vlm pair from scratch on the demo world: a tiny LLaVA-shaped captioner with a chat template
(``vlm``) and a tiny SigLIP filter started from its vision tower (``siglip``); save them, measure them as the
pipeline runs them, and write their model card.

python -m capfilt.demo.training.vlm_pair --output models/embedded    # vlm-captioner/ and siglip/
python -m capfilt.demo.training.vlm_pair --output models/embedded --evaluate-only
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from ...models.loading import EMBEDDED_DIR
from ..measure import MAX_NEW_TOKENS, MIN_NEW_TOKENS, NUM_CAPTIONS, THRESHOLD, TOP_P, format_metrics, measure_models
from .card import model_size
from .record import read_record, write_record
from .siglip import SiglipRecipe, build_filter, train_filter
from .vlm import INSTRUCTION, VLM_HIDDEN, VLM_LAYERS, build_captioner, train_captioner

CAPTIONER_DIR, FILTER_DIR = "vlm-captioner", "siglip"
COMMAND = "python -m capfilt.demo.training.vlm_pair"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="models/embedded", help=f"directory for {CAPTIONER_DIR}/ and {FILTER_DIR}/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caption-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32, help="images per captioner step")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--vision-from",
        default=str(EMBEDDED_DIR / "captioner"),
        help="the BLIP checkpoint whose trained vision tower the captioner starts from ('none': from scratch)",
    )
    parser.add_argument("--filter-steps", type=int, default=SiglipRecipe.steps)
    parser.add_argument("--filter-batch-size", type=int, default=SiglipRecipe.batch_size)
    parser.add_argument("--filter-lr", type=float, default=SiglipRecipe.lr)
    parser.add_argument("--filter-negatives", type=int, default=SiglipRecipe.negatives)
    parser.add_argument("--filter-mistake-images", type=int, default=SiglipRecipe.mistake_images)
    parser.add_argument("--filter-mistakes-per-batch", type=int, default=SiglipRecipe.mistakes_per_batch)
    on_off = argparse.BooleanOptionalAction
    parser.add_argument("--freeze-vision", action=on_off, default=True, help="keep the captioner's vision tower fixed")
    parser.add_argument("--filter-freeze-vision", action=on_off, default=SiglipRecipe.freeze_vision)
    parser.add_argument("--bfloat16", action=on_off, default=True, help="train under bfloat16 autocast")
    parser.add_argument("--captioner-from", help="reuse the trained captioner in this directory's vlm-captioner/")
    parser.add_argument("--eval-samples", type=int, default=512, help="fresh samples to measure on; 0 skips")
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--evaluate-only", action="store_true", help="measure the models already in --output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(2)
    output = Path(args.output)
    if not args.evaluate_only:
        seconds = train(args, output)
        print(f"saved to {output} in {sum(seconds.values()):.0f}s of training")
    metrics = measure(output, args.eval_samples, args.eval_seed) if args.eval_samples > 0 else None
    if metrics is not None:
        print(format_metrics(metrics))
    if not args.evaluate_only:
        write_model_card(output, args, seconds, metrics)
    return 0


def train(args: argparse.Namespace, output: Path) -> dict:
    """Train (or reuse) the captioner, then the filter, save both; returns the seconds of each."""
    import torch

    captioner, processor, seconds = captioner_stage(args)
    captioner.save_pretrained(output / CAPTIONER_DIR, safe_serialization=True)
    processor.save_pretrained(output / CAPTIONER_DIR)
    record = dict(seed=args.seed, caption_steps=args.caption_steps, batch_size=args.batch_size, lr=args.lr)
    record.update(vision_from=args.vision_from, freeze_vision=args.freeze_vision)
    write_record(output / CAPTIONER_DIR, **record, bfloat16=args.bfloat16, seconds=seconds["captioner"])

    recipe = SiglipRecipe(
        args.filter_steps,
        args.filter_batch_size,
        args.filter_negatives,
        args.filter_lr,
        args.filter_mistake_images,
        args.filter_mistakes_per_batch,
        args.filter_freeze_vision,
        args.bfloat16,
    )
    torch.manual_seed(args.seed + 1)
    model, filter_processor = build_filter(captioner, args.seed + 1)
    rng = random.Random(f"capfilt-train-siglip/{args.seed}")
    seconds["siglip"] = train_filter(model, filter_processor, demo_captioner(captioner, processor), recipe, rng)
    model.save_pretrained(output / FILTER_DIR, safe_serialization=True)
    filter_processor.save_pretrained(output / FILTER_DIR)
    write_record(output / FILTER_DIR, seed=args.seed, **vars(recipe), seconds=seconds["siglip"])
    return seconds


def captioner_stage(args: argparse.Namespace):
    """``(model, processor, {"captioner": seconds})``: trained here, or with ``--captioner-from`` loaded with
    the steps and seconds its ``training.json`` recorded."""
    if args.captioner_from:
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        source = Path(args.captioner_from) / CAPTIONER_DIR
        recorded = read_record(source)
        args.caption_steps = recorded.get("caption_steps", args.caption_steps)
        model = LlavaForConditionalGeneration.from_pretrained(source, local_files_only=True).eval()
        return model, AutoProcessor.from_pretrained(source, local_files_only=True), {"captioner": recorded["seconds"]}
    vision_from = None if args.vision_from == "none" else Path(args.vision_from)
    model, processor = build_captioner(args.seed, vision_from=vision_from)
    rng = random.Random(f"capfilt-train-vlm/{args.seed}")
    start = time.time()
    steps, batch_size = args.caption_steps, args.batch_size
    train_captioner(model, processor, steps, batch_size, args.lr, rng, args.bfloat16, args.freeze_vision)
    return model.eval(), processor, {"captioner": time.time() - start}


def _relative(path: str) -> str:
    """``path`` relative to the working directory when it lies under it (a source checkout's models)."""
    import os

    relative = os.path.relpath(path) if path != "none" else path
    return path if relative.startswith("..") else relative


def demo_captioner(model, processor):
    """The pipeline's ``VlmCaptioner`` over ``model`` with the demo's recommended settings."""
    from ...models.vlm_captioner import VlmCaptioner

    return VlmCaptioner(
        model,
        processor,
        "cpu",
        instruction=INSTRUCTION,
        num_captions=NUM_CAPTIONS,
        top_p=TOP_P,
        min_length=MIN_NEW_TOKENS,
        max_length=MAX_NEW_TOKENS,
    )


def measure(output: Path, samples: int, seed: int) -> dict:
    """The pair saved under ``output``, loaded back by path through ``models.families`` as the pipeline loads
    any checkpoint, measured on fresh demo samples (``measure.measure_models``), with the filter's own
    embeddings as the similarity beside it."""
    from ...models import families
    from ...models.similarity import load_similarity

    captioner = families.load(
        families.CAPTIONER,
        str(output / CAPTIONER_DIR),
        device="cpu",
        instruction=INSTRUCTION,
        num_captions=NUM_CAPTIONS,
        top_p=TOP_P,
        min_length=MIN_NEW_TOKENS,
        max_length=MAX_NEW_TOKENS,
    )
    scorer = families.load(families.FILTER, str(output / FILTER_DIR), device="cpu")
    similarities = {"siglip": load_similarity("itc", scorer)}
    return measure_models(captioner, scorer, samples, seed, THRESHOLD, similarities=similarities)


def write_model_card(output: Path, args: argparse.Namespace, seconds: dict, metrics: dict | None) -> None:
    """``vlm-captioner/README.md``, the pair's card (the filter's directory points to it)."""
    sizes = {name: model_size(output / name) for name in (CAPTIONER_DIR, FILTER_DIR)}
    shown = {**vars(args), "vision_from": _relative(args.vision_from)}
    options = " ".join(
        f"--{name.replace('_', '-')} {value}"
        for name, value in shown.items()
        if name
        not in {"output", "evaluate_only", "captioner_from", "bfloat16", "freeze_vision", "filter_freeze_vision"}
    )
    switches = " ".join(
        ("--" if getattr(args, name) else "--no-") + name.replace("_", "-")
        for name in ("bfloat16", "freeze_vision", "filter_freeze_vision")
    )
    lines = [
        "# capfilt demo-vlm models",
        "",
        "The second demo pair, from today's families: a tiny LLaVA-shaped captioner",
        "(`LlavaForConditionalGeneration`: a SigLIP vision tower, LLaVA's two-layer projector, a Llama decoder,",
        "a chat template) in `vlm-captioner/`, and a tiny SigLIP filter (`SiglipModel`) in `siglip/`, trained",
        "on CPU on the demo world, their vision tower the demo BLIP captioner's. They know nothing outside it.",
        "The `demo-vlm` pipeline runs them.",
        "",
        f"- images 64 px, patch 8, hidden {VLM_HIDDEN}, {VLM_LAYERS} layers per tower; word-level vocabularies",
        f"- size: captioner {sizes[CAPTIONER_DIR]:.1f} MB, siglip {sizes[FILTER_DIR]:.1f} MB (safetensors, fp32)",
        f"- command (2 CPU threads): `{COMMAND} --output {args.output} {options} {switches}`",
        f"- seconds: captioner {seconds['captioner']:.0f}, siglip {seconds['siglip']:.0f} "
        f"(with mining the captioner's mistakes), total {sum(seconds.values()):.0f}",
        "- captioner: teacher-forced on the pipeline's own chat prompt (`processor.apply_chat_template` of one",
        f"  user turn: the image, then `{INSTRUCTION}`; the assistant's turn opened) followed by the caption and",
        "  `</s>`, loss on the caption and `</s>` only",
        "- captioner's vision tower: as LLaVA starts from a pre-trained vision encoder and keeps it frozen, it",
        "  starts from the demo's trained one, the BLIP captioner's (`--vision-from`; BLIP's fused qkv split",
        "  into SigLIP's q/k/v, its class token dropped) and stays frozen; the projector and the Llama decoder",
        "  train. From scratch (`--vision-from none`, sine-cosine patch positions, everything trained, 4000",
        "  steps) greedy captions were exactly right for 0.42 of 64 fresh images: the decoder had to learn to see",
        "  as well as to write",
        "- filter: vision encoder copied from the trained captioner and kept fixed; attention-pooling head, text",
        "  tower, temperature and bias trained with SigLIP's pairwise sigmoid loss, averaged over three parts",
        "  (true pairs; each image's own wrong captions: its five one-factor changes, two from the BLIP filter's",
        "  mix of errors and, for some images, the captioner's own wrong samples; the other images' captions),",
        "  so the match probability crosses 0.5 where the evidence turns",
        "",
        f"Recommended settings: instruction `{INSTRUCTION}`, decoding nucleus, num_captions {NUM_CAPTIONS}, "
        f"top_p {TOP_P}, min_length {MIN_NEW_TOKENS}, max_length {MAX_NEW_TOKENS} (new tokens), "
        f"threshold {THRESHOLD} (the `demo-vlm` pipeline's).",
    ]
    if metrics is not None:
        lines += ["", "## Measured on fresh demo data", "", "```", format_metrics(metrics), "```"]
    (output / CAPTIONER_DIR / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (output / FILTER_DIR / "README.md").write_text(
        "# capfilt demo SigLIP filter\n\nThe filter of the demo-vlm pair: see `../vlm-captioner/README.md`.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    raise SystemExit(main())

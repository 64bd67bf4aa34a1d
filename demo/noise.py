"""The demo models under other noise mixes: BLIP's Table 1 ablation and where CapFilt's misses come from.

The demo shards have one noise mix (about 40% correct web captions, the rest spread evenly over five kinds of
damage). A filter that only learned that mix would fall apart on another, so this re-noises fresh demo images
with other proportions of the same kinds (``--mix NAME=KIND=W,...`` adds one) and runs the four settings of
BLIP's Table 1 on each (``measure.measure_models``: the pipeline's own stages, the models loaded by path). For
CapFilt it also says why an image did not end with a right caption: the captioner never produced one, or the
filter dropped or outranked it (``evaluate.capfilt_misses``).

    python -m capfilt.demo.noise                      # the shipped models, 512 images per mix
    python -m capfilt.demo.noise --models /tmp/demo --samples 1024
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from ..models.loading import EMBEDDED_DIR
from ..pipeline.config import VideoConfig
from .evaluate import ABLATION_ROWS, MISS_KINDS, capfilt_misses
from .measure import load_models, measure_models
from .world import parse_noise_mix

# Each mix's weights per noise kind; none of them is the generator's default mix.
MIXES = {
    "10% correct": "correct=0.1,other_image=0.18,one_word_off=0.18,boilerplate=0.18,empty=0.18,missing=0.18",
    "70% correct": "correct=0.7,other_image=0.06,one_word_off=0.06,boilerplate=0.06,empty=0.06,missing=0.06",
    "one word off": "correct=0.3,one_word_off=0.5,other_image=0.2",
    "other images": "correct=0.3,other_image=0.7",
    "spam and blanks": "correct=0.2,boilerplate=0.4,empty=0.2,missing=0.2",
}
HEADER = ["mix", "web right", "ITM AUC", "none", "filter", "captioner", "capfilt", "capfilt − captioner"]


def table_row(name: str, metrics: dict, threshold: float) -> list[str]:
    """One mix's cells: web accuracy, ITM AUC, accuracy / clean yield per Table 1 setting, CapFilt's gain over
    the captioner alone in points, and CapFilt's misses by kind (``MISS_KINDS``)."""
    rows = {r["name"]: r for r in metrics["ablation"]}
    settings = [f"{rows[n]['accuracy']:.3f} / {rows[n]['clean_yield']:.3f}" for n in ABLATION_ROWS]
    capfilt, captioner_only = rows["capfilt"], rows["captioner"]
    gain = (
        f"{100 * (capfilt['accuracy'] - captioner_only['accuracy']):+.1f} / "
        f"{100 * (capfilt['clean_yield'] - captioner_only['clean_yield']):+.1f} pt"
    )
    misses = capfilt_misses(metrics["rows"], threshold)
    cells = [name, f"{metrics['evaluation']['web_accuracy']:.2f}", f"{metrics['itm']['auc']:.3f}"]
    return cells + settings + [gain] + [str(misses[m]) for m in MISS_KINDS]


def noise_table(
    models, mixes: dict[str, str], samples: int, seed: int, threshold: float, video: VideoConfig | None = None
) -> Iterator[str]:
    """The markdown table, a line at a time (one per mix, as each is measured).

    Args:
        models: the ``(captioner, scorer)`` pair of ``measure.load_models``.
        mixes: name -> noise mix text (``world.parse_noise_mix``).
        samples: fresh images per mix.
        seed: the first mix's seed; each further mix adds one.
        threshold: the filter threshold.
        video: measure on clips of the demo world, sampled and captioned as this says.
    """
    yield "| " + " | ".join(HEADER + [m.replace("_", " ") for m in MISS_KINDS]) + " |"
    yield "|" + " --- |" * (len(HEADER) + len(MISS_KINDS))
    for offset, (name, text) in enumerate(mixes.items()):
        mix = parse_noise_mix(text)
        metrics = measure_models(*models, samples, seed + offset, threshold, noise_mix=mix, video=video)
        yield "| " + " | ".join(table_row(name, metrics, threshold)) + " |"


def main(argv: list[str] | None = None) -> int:
    """Print the table for ``MIXES`` and any ``--mix``."""
    parser = argparse.ArgumentParser(prog="python -m capfilt.demo.noise", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=str(EMBEDDED_DIR), help="a demo-model directory (captioner/, itm/)")
    parser.add_argument("--samples", type=int, default=512, help="fresh images per mix")
    parser.add_argument("--seed", type=int, default=2000, help="first mix's seed; each mix adds one")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--mix", action="append", default=[], metavar="NAME=KIND=W,...", help="an extra mix")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--video", action="store_true", help="clips of the demo world instead of images")
    parser.add_argument("--frames", type=int, default=8, help="with --video: frames sampled per clip")
    parser.add_argument("--caption-frames", default="spread", help="with --video: middle, spread or all")
    args = parser.parse_args(argv)
    video = VideoConfig(frames=args.frames, caption_frames=args.caption_frames) if args.video else None

    import torch

    torch.set_num_threads(args.threads)
    mixes = dict(MIXES)
    for extra in args.mix:
        name, _, text = extra.partition("=")
        mixes[name] = text
    what = f"clips ({video.frames} frames, captions from {video.caption_frames})" if video else "images"
    print(f"models {args.models}, {args.samples} fresh {what} per mix, threshold {args.threshold}\n")
    for line in noise_table(load_models(args.models), mixes, args.samples, args.seed, args.threshold, video):
        print(line, flush=True)
    print("\ncells: accuracy of kept captions / clean yield (right captions kept / images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

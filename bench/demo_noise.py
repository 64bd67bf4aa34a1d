"""The demo models under other noise mixes: BLIP's Table 1 ablation and where CapFilt's misses come from.

The demo shards have one noise mix (about 40% correct web captions, the rest spread evenly over five kinds of
damage). A filter that only learned that mix would fall apart on another, so this re-noises fresh demo images
with other proportions of the same kinds (`--mix NAME=KIND=W,...` adds one) and runs the four settings of
BLIP's Table 1 on each, with the HF models loaded by path exactly as the pipeline loads them. For CapFilt it
also says why an image did not end with a right caption: the captioner never produced one, or the filter
dropped or outranked it (`pipeline.evaluate.capfilt_misses`).

    python -m bench.demo_noise                      # the shipped models, 512 images per mix
    python -m bench.demo_noise --models /tmp/demo --samples 1024
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Each mix's weights per noise kind; none of them is the generator's default mix.
MIXES = {
    "10% correct": "correct=0.1,other_image=0.18,one_word_off=0.18,boilerplate=0.18,empty=0.18,missing=0.18",
    "70% correct": "correct=0.7,other_image=0.06,one_word_off=0.06,boilerplate=0.06,empty=0.06,missing=0.06",
    "one word off": "correct=0.3,one_word_off=0.5,other_image=0.2",
    "other images": "correct=0.3,other_image=0.7",
    "spam and blanks": "correct=0.2,boilerplate=0.4,empty=0.2,missing=0.2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models" / "demo"))
    parser.add_argument("--samples", type=int, default=512, help="fresh images per mix")
    parser.add_argument("--seed", type=int, default=2000, help="first mix's seed; each mix adds one")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--mix", action="append", default=[], metavar="NAME=KIND=W,...", help="an extra mix")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from capfilt.demo import train as train_demo
    from capfilt.demo.evaluate import ABLATION_ROWS, MISS_KINDS, capfilt_misses
    from capfilt.demo.world import parse_noise_mix

    torch.set_num_threads(args.threads)
    mixes = dict(MIXES)
    for extra in args.mix:
        name, _, text = extra.partition("=")
        mixes[name] = text
    processor, captioner, itm = train_demo.load_models(Path(args.models))
    print(f"models {args.models}, {args.samples} fresh images per mix, threshold {args.threshold}\n")
    header = ["mix", "web right", "ITM AUC", "none", "filter", "captioner", "capfilt", "capfilt − captioner"]
    print("| " + " | ".join(header + [m.replace("_", " ") for m in MISS_KINDS]) + " |")
    print("|" + " --- |" * (len(header) + len(MISS_KINDS)))
    for offset, (name, text) in enumerate(mixes.items()):
        metrics = train_demo.evaluate_models(
            captioner,
            itm,
            processor,
            args.samples,
            args.seed + offset,
            threshold=args.threshold,
            noise_mix=parse_noise_mix(text),
        )
        rows = {r["name"]: r for r in metrics["ablation"]}
        settings = [f"{rows[n]['accuracy']:.3f} / {rows[n]['clean_yield']:.3f}" for n in ABLATION_ROWS]
        capfilt, captioner_only = rows["capfilt"], rows["captioner"]
        gain = (
            f"{100 * (capfilt['accuracy'] - captioner_only['accuracy']):+.1f} / "
            f"{100 * (capfilt['clean_yield'] - captioner_only['clean_yield']):+.1f} pt"
        )
        misses = capfilt_misses(metrics["rows"], args.threshold)
        cells = [name, f"{metrics['evaluation']['web_accuracy']:.2f}", f"{metrics['itm']['auc']:.3f}"]
        print("| " + " | ".join(cells + settings + [gain] + [str(misses[m]) for m in MISS_KINDS]) + " |", flush=True)
    print("\ncells: accuracy of kept captions / clean yield (right captions kept / images)")


if __name__ == "__main__":
    main()

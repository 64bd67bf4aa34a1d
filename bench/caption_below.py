"""What `captioner.caption_below` buys and costs on the demo world: for each noise mix (the demo data's own and
`capfilt.demo.noise`'s five) and each value, the images per second of the model stages, the share of images
captioned, and BLIP Table 1's rows (accuracy of kept captions / clean yield), through the pipeline's own stages
(``demo.measure.measure_models``) with the shipped demo models.

    python -m bench.caption_below [--samples 256 --values none 0.999 0.99 0.9 0.5]

Per mix the fresh images are the same for every value (one seed per mix), so rows differ only by the option.
Time is the wall time of ``measure_models`` (decoding the fresh images included, the same for every value);
values run in rounds, interleaved, and the median is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from capfilt.demo.evaluate import ABLATION_ROWS
from capfilt.demo.measure import THRESHOLD, load_models, measure_models
from capfilt.demo.noise import MIXES
from capfilt.demo.world import parse_noise_mix
from capfilt.models.loading import EMBEDDED_DIR

DEMO_MIX = "demo data (40% right)"


def parse_value(text: str) -> float | None:
    return None if text == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--values", nargs="+", default=["none", "0.999", "0.99", "0.9", "0.5"])
    parser.add_argument("--rounds", type=int, default=1, help="timing rounds (the rows do not change)")
    parser.add_argument("--seed", type=int, default=3000)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    models = load_models(EMBEDDED_DIR)
    values = [parse_value(v) for v in args.values]
    mixes = {DEMO_MIX: None, **{name: parse_noise_mix(text) for name, text in MIXES.items()}}
    print(f"load average at start {os.getloadavg()[0]:.2f}; {args.samples} fresh images per mix")
    print("| mix | caption_below | images/s | captioned | " + " | ".join(ABLATION_ROWS) + " |")
    print("|" + " --- |" * (4 + len(ABLATION_ROWS)))
    for offset, (name, mix) in enumerate(mixes.items()):
        seconds: dict = {value: [] for value in values}
        results = {}
        for _ in range(args.rounds):
            for value in values:
                start = time.perf_counter()
                results[value] = measure_models(
                    *models, args.samples, args.seed + offset, THRESHOLD, noise_mix=mix, caption_below=value
                )
                seconds[value].append(time.perf_counter() - start)
        for value in values:
            metrics = results[value]
            captioned = sum(bool(r["synthetic_texts"]) for r in metrics["rows"]) / args.samples
            rows = {r["name"]: r for r in metrics["ablation"]}
            cells = [f"{rows[n]['accuracy']:.3f} / {rows[n]['clean_yield']:.3f}" for n in ABLATION_ROWS]
            rate = args.samples / statistics.median(seconds[value])
            label = "off" if value is None else f"{value:g}"
            print(f"| {name} | {label} | {rate:.1f} | {captioned:.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Images per second of each model family's tiny random checkpoint through capfilt's wrappers on this CPU: a
record of what each family's code path costs here, not a goal (tiny models say little about real ones).

    python -m bench.families [--images 16 32 --rounds 3 --num-captions 2 --max-length 8]

Each checkpoint is built from its transformers config (``demo/training/tiny.py``), saved and loaded by path. The
cost per image is the slope between the two image counts (start-up and the first call's warm-up cancel), in
interleaved rounds; the median and the spread over rounds are printed, with the load average at the start.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from capfilt.demo.training import tiny
from capfilt.models import families

WORDS = "a picture of red green blue circle square triangle small large on the left right and user assistant".split()


def checkpoints(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (role, checkpoint directory)."""
    blip_captioner, blip_itm = tiny.save_random_pair(root / "blip", WORDS)
    return {
        "BLIP captioning": ("captioner", str(blip_captioner)),
        "LLaVA (chat template)": ("captioner", str(tiny.save_random_llava(root / "llava", WORDS))),
        "BLIP-2 OPT (prompt)": ("captioner", str(tiny.save_random_blip2(root / "blip2", WORDS))),
        "GIT (image alone)": ("captioner", str(tiny.save_random_git(root / "git", WORDS))),
        "BLIP ITM": ("filter", str(blip_itm)),
        "BLIP-2 ITM": ("filter", str(tiny.save_random_blip2_itm(root / "blip2_itm", WORDS))),
        "SigLIP": ("filter", str(tiny.save_random_siglip(root / "siglip", WORDS))),
        "SigLIP 2 NaFlex": ("filter", str(tiny.save_random_siglip2(root / "siglip2", WORDS))),
        "CLIP": ("filter", str(tiny.save_random_clip(root / "clip", WORDS))),
    }


def pictures(count: int, seed: int = 0) -> list[Image.Image]:
    rng = random.Random(seed)
    return [Image.new("RGB", (480, 360), tuple(rng.randrange(256) for _ in range(3))) for _ in range(count)]


def seconds(model, role: str, images: list, args) -> float:
    start = time.perf_counter()
    if role == "captioner":
        for first in range(0, len(images), args.batch):
            model.caption(images[first : first + args.batch], seed=0)
    else:
        candidates = [["a red circle on the left", "a small blue square", "green"] for _ in images]
        model.score(images, candidates)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, nargs=2, default=[16, 48])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="images per caption call")
    parser.add_argument("--num-captions", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=8, help="new tokens per caption (min as well)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.images} images")
    with tempfile.TemporaryDirectory() as folder:
        options = {
            "captioner": dict(num_captions=args.num_captions, min_length=args.max_length, max_length=args.max_length),
            "filter": dict(batch_size=32),
        }
        models = {
            name: (role, families.load(role, path, device="cpu", dtype="float32", **options[role]))
            for name, (role, path) in checkpoints(Path(folder)).items()
        }
        small, large = pictures(args.images[0]), pictures(args.images[1], seed=1)
        slopes: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):  # interleaved: each round runs every family once at both sizes
            for name, (role, model) in models.items():
                seconds(model, role, small[:2], args)  # warm-up
                extra = seconds(model, role, large, args) - seconds(model, role, small, args)
                slopes[name].append(extra / (len(large) - len(small)))
    print(f"{'family':24} {'role':10} {'images/s (median)':>18} {'ms/image min–max':>18}")
    for name, costs in slopes.items():
        median = statistics.median(costs)
        spread = f"{1000 * min(costs):.1f}–{1000 * max(costs):.1f}"
        print(f"{name:24} {models[name][0]:10} {1 / median:18.1f} {spread:>18}")


if __name__ == "__main__":
    main()

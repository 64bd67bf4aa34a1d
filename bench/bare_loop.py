"""The same model work as a capfilt run, with nothing around it: the floor the pipeline is measured against.

Reads the shards' images and captions straight from the tars, decodes them, captions each image N times and
scores the web caption plus the N synthetic ones, in the pipeline's batch sizes. No Beam, no output files.
"""

from __future__ import annotations

import argparse
import gc
import glob
import io
import json
import tarfile
import time

STARTED = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="glob of .tar shards")
    parser.add_argument("--captioner", required=True)
    parser.add_argument("--itm", required=True)
    parser.add_argument("--num-captions", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--min-length", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from capfilt.models.captioner import Captioner
    from capfilt.models.itm import ItmScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    captioner = Captioner.from_pretrained(
        args.captioner,
        dtype=args.dtype,
        num_captions=args.num_captions,
        min_length=args.min_length,
        max_length=args.max_length,
    )
    scorer = ItmScorer.from_pretrained(args.itm, dtype=args.dtype, batch_size=args.batch_size * (args.num_captions + 1))
    gc.freeze()  # as the pipeline's workers do, so the floor gets the same collector savings
    images = 0
    for path in sorted(glob.glob(args.input)):
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(path) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
        items = list(samples.values())
        for start in range(0, len(items), args.batch_size):
            batch = items[start : start + args.batch_size]
            pictures = [Image.open(io.BytesIO(s["jpg"])).convert("RGB") for s in batch]
            captions = captioner.caption(pictures, seed=start)
            candidates = [[s["txt"].decode()] + c for s, c in zip(batch, captions)]
            scorer.score(pictures, candidates)
            images += len(batch)
    print(json.dumps({"images": images, "seconds": time.monotonic() - STARTED}))


if __name__ == "__main__":
    main()

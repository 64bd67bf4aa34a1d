"""What the CPU side of one worker process sustains: reading shards, decoding, and making the models' pixels, in
images/s, through the pipeline's own code (``batches.prepared_batches``: ``TarSamples``, ``decode_sample``,
``SharedPixels``) with the image processors of the given checkpoints, on 1..N decode threads
(``runtime.decode_threads``). No model runs. A GPU is kept fed when this rate is above what the models consume
there (``bench.gpu``).

    python -m bench.feed --captioner DIR --itm DIR [--images 256 --size 640x480 --threads 1,2]

Each thread count is measured ``--repeat`` times, interleaved with the others; medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from bench.bench import median, write_shards
from capfilt.pipeline.config import load_config
from capfilt.pipeline.cores import usable_cores
from capfilt.pipeline.shard.batches import prepared_batches
from capfilt.pipeline.shard.pixels import SharedPixels
from capfilt.pipeline.shard.reader import TarSamples


def processor_owners(checkpoints: list[str], dtype: str) -> list:
    """Stand-ins for the loaded models as ``SharedPixels`` sees them (an image processor and a dtype), without
    loading any weights."""
    import torch
    from transformers import AutoProcessor

    owners = []
    for path in checkpoints:
        processor = AutoProcessor.from_pretrained(path)
        model = SimpleNamespace(dtype=getattr(torch, dtype))
        owners.append(SimpleNamespace(image_processor=processor.image_processor, model=model))
    return owners


def feed(shards: list[Path], owners: list, batch_size: int, threads: int) -> tuple[int, float]:
    """Live images made ready and the seconds it took, as one worker's prefetch thread makes them."""
    config = load_config("demo", overrides=[f"captioner.batch_size={batch_size}"])
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    pixels = SharedPixels(owners, pool, threads)
    images, started = 0, time.monotonic()
    for path in shards:
        with open(path, "rb") as stream:
            samples = TarSamples(stream, config.decode.max_member_bytes)
            for batch in prepared_batches(samples, config, pixels, pool, threads):
                images += sum(1 for s in batch if s.live)
    seconds = time.monotonic() - started
    if pool is not None:
        pool.shutdown()
    return images, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captioner", required=True)
    parser.add_argument("--itm", required=True)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", default="640x480", help="photo size, WIDTHxHEIGHT")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", default=None, help="comma-separated decode thread counts (default 1 and all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    counts = [int(x) for x in args.threads.split(",")] if args.threads else sorted({1, usable_cores()})
    work = Path(tempfile.mkdtemp(prefix="capfilt-feed-"))
    write_shards(work, 2, args.images // 2, size=(width, height))
    shards = sorted(work.glob("*.tar"))
    owners = processor_owners([args.captioner, args.itm], args.dtype)
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for round_ in range(args.repeat):
        for threads in counts:
            images, seconds = feed(shards, owners, args.batch_size, threads)
            rates[threads].append(images / seconds)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} thread(s) {r[-1]:.1f} img/s" for n, r in rates.items()))
    processors = SharedPixels(owners).processors
    print(
        f"{width}x{height} JPEGs, {processors} distinct processor(s), batch {args.batch_size}, {args.dtype} pixels, "
        f"{usable_cores()} usable cores; median of {args.repeat}:"
    )
    for threads, values in rates.items():
        print(f"  {threads} decode thread(s): {median(values):.1f} img/s")


if __name__ == "__main__":
    main()

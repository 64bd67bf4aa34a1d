"""What contrastive similarity costs, and what ``capfilt select`` does on the demo pool. Prints figures.

    python -m bench.similarity itc-cost --itm DIR [--images 32 --repeat 5]   # ITM alone vs ITM + ITC
    python -m bench.similarity embeddings-cost [--repeat 3]   # a demo run with and without embedding files
    python -m bench.similarity select [--fraction 0.3]        # score the demo pool once, select a fraction

``DIR`` is a BLIP ITM checkpoint; ``python -m bench.base_models`` writes base-shaped ones with random weights.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.bench import measured, photo


def itc_cost(args) -> None:
    """The ITM stage as the pipeline runs it (``annotate.score_batch``), with and without the ITC head of the
    same checkpoint, interleaved so that both see the same machine."""
    import torch

    from capfilt.models.itm import ItmScorer
    from capfilt.models.similarity import ItcSimilarity
    from capfilt.pipeline.shard.annotate import score_batch
    from capfilt.pipeline.shard.sample import Sample

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(0)
    pictures = [Image.open(io.BytesIO(photo(rng))).convert("RGB") for _ in range(args.images)]
    words = "a photo of red cat dog on the left with blue sky".split()

    def caption(start: int) -> str:
        return " ".join(words[(start + k) % len(words)] for k in range(14))

    def batch() -> list[Sample]:
        return [
            Sample(key=str(i), image=picture, web_text=caption(i), synthetic=[caption(i + 1), caption(i + 2)])
            for i, picture in enumerate(pictures)
        ]

    scorer = ItmScorer.from_pretrained(args.itm, device="cpu", batch_size=args.batch_size)
    itc = ItcSimilarity.sharing(scorer, batch_size=args.batch_size)
    score_batch(batch()[:2], scorer, itc)  # warm up both paths
    wall = {"itm": [], "itm+itc": []}
    cpu = {"itm": [], "itm+itc": []}
    for _ in range(args.repeat):
        for name, similarity in (("itm", None), ("itm+itc", itc)):
            samples = batch()
            started, started_cpu = time.perf_counter(), time.process_time()
            score_batch(samples, scorer, similarity)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    print(f"{args.images} images x 3 candidates (web + 2 synthetic, 16 tokens), {args.repeat} interleaved repeats")
    for label, times in (("wall", wall), ("CPU (all threads; steadier when others share the cores)", cpu)):
        itm, both = statistics.median(times["itm"]), statistics.median(times["itm+itc"])
        print(f"{label}:")
        print(f"  ITM alone:  median {itm:.2f} s  ({', '.join(f'{t:.2f}' for t in times['itm'])})")
        print(f"  ITM + ITC:  median {both:.2f} s  ({', '.join(f'{t:.2f}' for t in times['itm+itc'])})")
        print(f"  ITC on top of ITM: {100 * (both / itm - 1):+.1f}% of the ITM stage")


def _capfilt(*argv: str) -> list[str]:
    return [sys.executable, "-m", "capfilt", *argv]


def embeddings_cost(args) -> None:
    """Whole demo runs with ITC similarity, with and without ``similarity.embeddings``, interleaved; and the
    embedding writer alone on arrays of the same size."""
    import numpy as np

    from capfilt.pipeline.shard.embeddings import EmbeddingWriter
    from capfilt.pipeline.shard.sample import Sample

    root = Path(tempfile.mkdtemp(prefix="capfilt-bench-emb-"))
    measured(_capfilt("demo-data", "--output", str(root / "in"), "--shards", "4", "--samples-per-shard", "128"))
    times = {False: [], True: []}
    for _ in range(args.repeat):
        for embeddings in (False, True):
            out = root / f"out-{embeddings}"
            command = _capfilt("run", "demo", "--input", str(root / "in" / "*.tar"), "--output", str(out))
            command += ["--overwrite", "--set", "similarity.model=itc", "--set", f"similarity.embeddings={embeddings}"]
            times[embeddings].append(measured(command)[0])
    plain, with_files = statistics.median(times[False]), statistics.median(times[True])
    sizes = json.loads((root / "out-True" / "sizes.json").read_text())
    dimension = np.load(next((root / "out-True" / "img_emb").glob("*.npy"))).shape[1]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for name, kept in sizes.items():  # the writer alone, on rows of the run's size, into a fresh folder
        writer = EmbeddingWriter(str(root / "writer-only"), name.removesuffix(".tar"))
        for i in range(kept):
            row = rng.standard_normal(dimension).astype(np.float32)
            writer.add(Sample(key=f"{name}_{i}", image_embedding=row, text_embeddings={"c": row}), "c")
        writer.commit()
    write = time.perf_counter() - started
    print(f"demo run, 4 x 128 samples, similarity itc; {args.repeat} interleaved repeats (median wall)")
    print(f"without embeddings: {plain:.2f} s  ({', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"with embeddings:    {with_files:.2f} s  ({', '.join(f'{t:.2f}' for t in times[True])})")
    print(f"difference: {100 * (with_files / plain - 1):+.1f}% of the run (run-to-run noise included)")
    print(
        f"the embedding writer alone, {sum(sizes.values())} kept samples x {dimension} dims in {len(sizes)} shards "
        f"(collect, float16 .npy, metadata parquet, atomic renames): {1000 * write:.0f} ms = "
        f"{100 * write / plain:.2f}% of the run"
    )


def select_demo(args) -> None:
    """Score the demo pool once (score_only, ITC), select a fraction, and check the cut against the pool."""
    import pyarrow.parquet as pq

    from capfilt.pipeline.select.cut import best_score

    root = Path(tempfile.mkdtemp(prefix="capfilt-bench-select-"))
    measured(_capfilt("demo-data", "--output", str(root / "in"), "--shards", "4", "--samples-per-shard", "128"))
    scored, selected = root / "scored", root / "selected"
    seconds = measured(
        _capfilt(
            "run",
            "demo",
            "--input",
            str(root / "in" / "*.tar"),
            "--output",
            str(scored),
            "--set",
            "filter.policy=score_only",
            "--set",
            "similarity.model=itc",
        )
    )[0]
    select_seconds = measured(
        _capfilt("select", str(scored), "--output", str(selected), "--keep-fraction", str(args.fraction))
    )[0]
    rows = [r for p in sorted(selected.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    pool = [r for p in sorted(scored.glob("*.parquet")) for r in pq.read_table(p).to_pylist() if r["status"] == "kept"]
    kept = [best_score(r, "itm") for r in rows if r["status"] == "kept"]
    dropped = [best_score(r, "itm") for r in rows if r["status"] == "below_fraction"]
    per_shard = {
        p.stem: sum(r["status"] == "kept" for r in pq.read_table(p).to_pylist())
        for p in sorted(selected.glob("*.parquet"))
    }
    print(f"scored the demo pool once: {len(pool)} samples in {seconds:.1f} s (score_only, similarity itc)")
    print(f"select --keep-fraction {args.fraction}: {select_seconds:.1f} s, no model")
    print(
        f"kept {len(kept)} = ceil({args.fraction} x {len(pool)}) = {math.ceil(args.fraction * len(pool) - 1e-9)}"
        f" ({len(kept) / len(pool):.4f} of the pool), per shard {per_shard}"
    )
    print(
        f"lowest kept score {min(kept):.6f}, highest dropped {max(dropped):.6f}: "
        f"{'no dropped sample outscores a kept one' if max(dropped) <= min(kept) else 'ORDER BROKEN'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("itc-cost")
    c.add_argument("--itm", required=True)
    c.add_argument("--images", type=int, default=32)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--repeat", type=int, default=5)
    c.add_argument("--threads", type=int, default=0)
    e = commands.add_parser("embeddings-cost")
    e.add_argument("--repeat", type=int, default=3)
    s = commands.add_parser("select")
    s.add_argument("--fraction", type=float, default=0.3)
    args = parser.parse_args()
    {"itc-cost": itc_cost, "embeddings-cost": embeddings_cost, "select": select_demo}[args.command](args)


if __name__ == "__main__":
    main()

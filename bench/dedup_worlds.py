"""Semantic deduplication end to end on several demo worlds, per embedding and ε: what the README's commands give
(``demo-data --duplicates``, ``run demo`` scoring every sample with image embeddings, ``select --dedup semantic``,
``eval``), world by world, then per embedding and ε the worst recall and the sums of wrong merges and lost
descriptions over the worlds. Prints figures; asserts nothing. Each world takes about 15 s to score per embedding
and a few seconds per ε on 2 cores.

    python -m bench.dedup_worlds [--seeds 0 1 2] [--fractions 0.2 0.5] [--models embedded:siglip ...] [--eps ...]

The goal the issue set on the demo world: recall ≥ 0.95 of the injected copies, and no scene's only image
removed (``descriptions_lost`` 0: a demo scene is what its caption says, see README "Deduplication").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

GOAL_RECALL = 0.95


def capfilt(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "capfilt", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"capfilt {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-400:]}")


def world(root: Path, seed: int, fraction: float, shards: int, per_shard: int) -> Path:
    folder = root / f"world-{seed}-{fraction}"
    capfilt(
        "demo-data", "--output", str(folder), "--shards", str(shards), "--samples-per-shard", str(per_shard),
        "--duplicates", str(fraction), "--seed", str(seed),
    )  # fmt: skip
    return folder


def scored(root: Path, shards: Path, model: str) -> Path:
    folder = root / f"{shards.name}-{model.replace(':', '_')}"
    capfilt(
        "run", "demo", "--input", str(shards / "*.tar"), "--output", str(folder),
        "--set", "filter.policy=score_only", "--set", f"similarity.model={model}",
        "--set", "similarity.embeddings=true",
    )  # fmt: skip
    return folder


def deduplicated(scored_dir: Path, eps: float) -> dict:
    folder = scored_dir.with_name(f"{scored_dir.name}-eps{eps}")
    capfilt("select", str(scored_dir), "--output", str(folder), "--threshold", "0", "--dedup", "semantic",
            "--dedup-eps", str(eps))  # fmt: skip
    capfilt("eval", str(folder))
    return json.loads((folder / "report.json").read_text())["deduplication"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.5], help="--duplicates of each world")
    parser.add_argument("--models", nargs="+", default=["embedded:siglip", "embedded:clip", "itc"])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.001, 0.002, 0.003])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--samples-per-shard", type=int, default=128)
    parser.add_argument("--workdir", help="where worlds and outputs go (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    folder = contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(prefix="capfilt-w-")
    with folder as where:
        root = Path(where)
        root.mkdir(parents=True, exist_ok=True)
        results: dict[tuple[str, float], list[dict]] = {}
        print("seed fraction model            eps     recall  wrong (renders of one caption)  groups whole  lost")
        for seed in args.seeds:
            for fraction in args.fractions:
                shards = world(root, seed, fraction, args.shards, args.samples_per_shard)
                for model in args.models:
                    scored_dir = scored(root, shards, model)
                    for eps in args.eps:
                        d = deduplicated(scored_dir, eps)
                        results.setdefault((model, eps), []).append(d)
                        print(
                            f"{seed:<4} {fraction:<8} {model:<16} {eps:<7} {d['recall']:.3f}   "
                            f"{d['wrong_merges']:>5} ({d['wrong_merges_same_description']:>3}){'':>20} "
                            f"{d['groups_removed']:>6}  {d['descriptions_lost']:>4} of {d['descriptions']}",
                            flush=True,
                        )
    worlds = len(args.seeds) * len(args.fractions)
    print(f"\nover {worlds} worlds: worst and median (upper middle) recall, sums, and worlds meeting the goal")
    print("model            eps     worst   median  wrong (renders)  groups whole  lost  goal met")
    for (model, eps), figures in results.items():
        recalls = sorted(d["recall"] for d in figures)
        met = sum(d["recall"] >= GOAL_RECALL and d["descriptions_lost"] == 0 for d in figures)
        total = {k: sum(d[k] for d in figures) for k in figures[0] if isinstance(figures[0][k], int)}
        print(
            f"{model:<16} {eps:<7} {recalls[0]:.3f}   {recalls[len(recalls) // 2]:.3f}   "
            f"{total['wrong_merges']:>5} ({total['wrong_merges_same_description']:>3})      "
            f"{total['groups_removed']:>6}  {total['descriptions_lost']:>4}  {met} of {len(figures)}"
        )


if __name__ == "__main__":
    main()

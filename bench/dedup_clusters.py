"""What clustering costs semantic deduplication on the demo world: ``capfilt select --dedup semantic`` on a scored
demo folder with injected copies, as it runs (k-means clusters, pairs compared only inside one), against the same
selection with the whole pool as one cluster (every pair compared), each measured by ``capfilt eval``'s figures.
The copies found with one cluster but not with k-means are pairs whose two samples fell into two clusters:
SemDeDup's known misses. Prints figures; asserts nothing.

    capfilt demo-data --output big --shards 10 --samples-per-shard 1000 --duplicates 0.2
    capfilt run demo --input 'big/*.tar' --output scored --set filter.policy=score_only \\
        --set similarity.model=embedded:siglip --set similarity.embeddings=true
    python -m bench.dedup_clusters scored [--dedup-eps E]

A pool needs more than ``dedup.CLUSTER_TARGET`` samples for k-means to make more than one cluster. The selections
run in this process (the FnApiRunner), which is what lets the second one see the changed cluster sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

from capfilt.cli import main as capfilt
from capfilt.demo.evaluate import SELECTABLE, deduplication_rows, read_shard_rows
from capfilt.pipeline.select import dedup


def select(scored: str, output: Path, eps: list[str]) -> list[tuple[str, dict]]:
    """The selection's rows, its own output quietly written to ``output``."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = capfilt(["select", scored, "--output", str(output), "--threshold", "0", "--dedup", "semantic", *eps])
    if code != 0:
        raise SystemExit(f"capfilt select exited {code} on {scored}")
    return read_shard_rows(str(output))


def removed(rows: list[tuple[str, dict]]) -> dict[str, str]:
    return {f"{shard}/{r['key']}": r["duplicate_of"] for shard, r in rows if r["status"] == "duplicate"}


def summary(name: str, figures: dict) -> str:
    return (
        f"{name:<22} recall {figures['recall']:.3f} ({figures['found']} of {figures['copies']}), "
        f"removed {figures['removed']}, wrong merges {figures['wrong_merges']} "
        f"({figures['wrong_merges_same_description']} renders of one caption), groups removed whole "
        f"{figures['groups_removed']}, descriptions lost {figures['descriptions_lost']} of {figures['descriptions']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scored", help="a demo folder scored with image embeddings (score_only)")
    parser.add_argument("--dedup-eps", help="as select's; default: the scored model's")
    args = parser.parse_args(argv)
    eps = ["--dedup-eps", args.dedup_eps] if args.dedup_eps else []
    with tempfile.TemporaryDirectory(prefix="capfilt-bench-clusters-") as root:
        clustered = select(args.scored, Path(root) / "clusters", eps)
        pool = sum(r["status"] in SELECTABLE for _, r in clustered)
        target, largest = dedup.CLUSTER_TARGET, dedup.MAX_CLUSTER
        try:
            # One centroid, never split: the whole pool is one cluster and every pair is compared.
            dedup.CLUSTER_TARGET = dedup.MAX_CLUSTER = pool + 1
            whole = select(args.scored, Path(root) / "whole", eps)
        finally:
            dedup.CLUSTER_TARGET, dedup.MAX_CLUSTER = target, largest
    print(f"{pool} selectable samples; k-means made {dedup.cluster_count(pool)} clusters (one per {target})")
    split, one = deduplication_rows(clustered), deduplication_rows(whole)
    print(summary("k-means clusters", split))
    print(summary("one cluster (all pairs)", one))
    lost = one["found"] - split["found"]
    print(f"copies the clusters cost: {lost} of {one['copies']} ({lost / max(1, one['copies']):.1%})")
    mine, theirs = removed(clustered), removed(whole)
    print(
        f"samples removed only with one cluster: {len(theirs.keys() - mine.keys())}; "
        f"only with k-means: {len(mine.keys() - theirs.keys())}; "
        f"by both, naming another kept copy: {sum(mine[k] != theirs[k] for k in mine.keys() & theirs.keys())}"
    )


if __name__ == "__main__":
    main()

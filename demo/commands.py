"""The demo world's side of the command line: ``demo-data``, the demo input and evaluation of ``capfilt run demo``
(``WORLD``), and ``eval``. The command line imports this module in one place."""

from __future__ import annotations

import os
import sys

from ..pipeline.config import DemoDataConfig
from ..pipeline.errors import UsageError
from ..pipeline.launch import DemoWorld
from ..pipeline.report.build import update_report
from . import evaluate
from .world import parse_noise_mix, write_demo_shards


def write_demo_input(settings: DemoDataConfig, folder: str) -> str:
    """Write the demo shards ``settings`` describe into ``folder``; returns the input pattern of exactly those
    shards (not whatever an earlier run with more shards left in the folder)."""
    paths = write_demo_shards(
        folder,
        settings.shards,
        settings.samples_per_shard,
        settings.seed,
        settings.correct_fraction,
        video=settings.video,
    )
    print(f"capfilt: wrote {len(paths)} demo shard(s) to {folder}/", file=sys.stderr)
    names = ",".join(os.path.basename(p)[: -len(".tar")] for p in paths)
    return os.path.join(folder, f"{{{names}}}.tar" if len(paths) > 1 else os.path.basename(paths[0]))


def demo_data(
    output: str,
    shards: int,
    samples_per_shard: int,
    seed: int = 0,
    correct_fraction: float = 0.4,
    noise_mix: str | None = None,
    world: str = "default",
    video: bool = False,
    duplicates: float = 0.0,
    cuts: float = 0.0,
) -> int:
    """``capfilt demo-data``: the demo world validates its own arguments; here a bad one is a usage error."""
    if shards < 1 or samples_per_shard < 1:
        raise UsageError("--shards and --samples-per-shard must be at least 1")
    if not 0.0 <= duplicates <= 1.0:  # also refuses nan
        raise UsageError(f"--duplicates must be a fraction within [0, 1], got {duplicates}")
    if not 0.0 <= cuts <= 1.0 or (cuts and not video):
        raise UsageError(f"--cuts must be a fraction within [0, 1], and only with --video, got {cuts}")
    try:
        mix = parse_noise_mix(noise_mix) if noise_mix is not None else None
        paths = write_demo_shards(
            output, shards, samples_per_shard, seed, correct_fraction, mix, world, video, duplicates, cuts
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"capfilt: wrote {len(paths)} shard(s) to {output}", file=sys.stderr)
    return 0


def require_ground_truth(output_dir: str) -> None:
    """Refuse output whose samples carry no ground truth (accuracy there would read 0, not unknown) or mix demo
    worlds, before any work."""
    evaluate.run_world(evaluate.read_rows(output_dir))


def kept_accuracy(output_dir: str) -> float:
    """Correct kept captions / kept, against the demo world's ground truth (the ``min_accuracy`` gate)."""
    require_ground_truth(output_dir)
    return evaluate.evaluate(output_dir)["kept_accuracy"]


def print_evaluation(output_dir: str, ablation: bool = False, retrieval: bool = False) -> None:
    """Print quality against the demo world's ground truth, and record it in report.json (and the page); with
    injected copies in the input (``demo-data --duplicates``) or duplicates removed, also how well they were removed;
    with ``retrieval`` also Recall@K of dual encoders trained on the output (on each Table 1 row with ``ablation``)."""
    require_ground_truth(output_dir)
    result = {"evaluation": evaluate.evaluate(output_dir)}
    print(evaluate.format_evaluation(result["evaluation"]))
    dedup = evaluate.deduplication(output_dir)
    if dedup is not None:  # only on input with injected copies, or a selection that removed some
        result["deduplication"] = dedup
        print("\n" + evaluate.format_deduplication(dedup))
    if ablation:
        result["ablation"] = evaluate.ablation(output_dir)
        print(evaluate.format_ablation(result["ablation"]))
    if retrieval:
        from .retrieval import format_retrieval
        from .retrieval import retrieval as measure_retrieval

        result["retrieval"] = measure_retrieval(output_dir, ablation)
        print(format_retrieval(result["retrieval"]))
    update_report(output_dir, result)


# What ``capfilt run`` needs of the demo world (its input, its evaluation, the accuracy gate).
WORLD = DemoWorld(write_demo_input, print_evaluation, kept_accuracy)

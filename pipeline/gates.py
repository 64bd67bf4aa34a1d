"""Curation gates for CI: conditions an output folder must meet, each failure named on its own line."""

from __future__ import annotations

import json
import sys

from .config import GatesConfig
from .errors import UsageError


def add_gate_arguments(parser) -> None:
    parser.add_argument("--min-kept-fraction", type=float, help="kept / input at least this")
    parser.add_argument("--max-failed-shards", type=int, help="at most this many unreadable shards")
    parser.add_argument(
        "--max-dropped-fraction",
        action="append",
        default=[],
        metavar="REASON=F",
        help="samples dropped for REASON / input at most F (repeatable)",
    )
    parser.add_argument("--min-accuracy", type=float, help="demo world only: correct kept captions / kept")


def gates_from_args(args) -> GatesConfig:
    """The gates given as ``capfilt check`` flags, validated as the config's ``gates:`` section is."""
    dropped = {}
    for item in args.max_dropped_fraction:
        reason, sep, value = item.partition("=")
        try:
            dropped[reason] = float(value)
        except ValueError:
            sep = ""
        if not sep or not reason:
            raise UsageError(f"--max-dropped-fraction {item}: expected REASON=FRACTION")
    gates = GatesConfig(
        min_kept_fraction=args.min_kept_fraction,
        max_failed_shards=args.max_failed_shards,
        max_dropped_fraction=dropped,
        min_accuracy=args.min_accuracy,
    )
    problems = gates.check()
    if problems:
        key, message = problems[0]
        flag, _, reason = key.partition(".")
        raise UsageError(f"--{flag.replace('_', '-')}{' ' + reason if reason else ''}: {message}")
    return gates


def failed_gates(report: dict, gates: GatesConfig, accuracy: float | None = None) -> list[str]:
    """The gates that ``report`` does not meet, as sentences; ``accuracy`` (kept-caption accuracy against
    ground truth) is needed only when ``gates.min_accuracy`` is set."""
    t = report["totals"]
    total = max(t["input"], 1)
    failures = []
    if gates.min_kept_fraction is not None and t["kept"] / total < gates.min_kept_fraction:
        failures.append(f"min-kept-fraction: kept {t['kept'] / total:.4f} < {gates.min_kept_fraction}")
    if gates.max_failed_shards is not None and len(t["failed_shards"]) > gates.max_failed_shards:
        failures.append(f"max-failed-shards: {len(t['failed_shards'])} failed > {gates.max_failed_shards}")
    for reason, limit in gates.max_dropped_fraction.items():
        fraction = t["dropped"].get(reason, 0) / total
        if fraction > limit:
            failures.append(f"max-dropped-fraction {reason}: {fraction:.4f} > {limit}")
    if gates.min_accuracy is not None and (accuracy is None or accuracy < gates.min_accuracy):
        measured = "not measurable (no ground truth)" if accuracy is None else f"{accuracy:.4f}"
        failures.append(f"min-accuracy: kept-caption accuracy {measured} < {gates.min_accuracy}")
    return failures


def check_gates(output_dir: str, gates: GatesConfig, accuracy=None) -> list[str]:
    """Print each failed gate on its own line; returns them (empty when all hold). ``accuracy`` is a callable
    ``output_dir -> float`` that measures kept-caption accuracy, asked only when ``min_accuracy`` is gated."""
    from . import storage  # here, not at the top: the parser imports this module, and Beam takes 0.7 s to import
    from .report.build import REPORT_JSON

    path = storage.join(output_dir, REPORT_JSON)
    if not storage.exists(path):
        failures = [f"report: {path} does not exist (the run did not finish)"]
    else:
        measured = accuracy(output_dir) if gates.min_accuracy is not None and accuracy is not None else None
        failures = failed_gates(json.loads(storage.read_bytes(path)), gates, measured)
    for failure in failures:
        print(f"capfilt: gate failed: {failure}", file=sys.stderr)
    return failures

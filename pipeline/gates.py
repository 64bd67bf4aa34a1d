"""Curation gates for CI: conditions an output folder must meet, each failure named on its own line."""

from __future__ import annotations

import json
import sys

from . import storage
from .report.build import REPORT_JSON


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


def gates_from_args(args) -> dict:
    gates = {}
    for name in ("min_kept_fraction", "max_failed_shards", "min_accuracy"):
        if getattr(args, name) is not None:
            gates[name] = getattr(args, name)
    for item in args.max_dropped_fraction:
        reason, sep, value = item.partition("=")
        try:
            gates.setdefault("max_dropped_fraction", {})[reason] = float(value)
        except ValueError:
            sep = ""
        if not sep or not reason:
            from .cli import UsageError

            raise UsageError(f"--max-dropped-fraction {item}: expected REASON=FRACTION")
    return gates


def failed_gates(report: dict, gates: dict, output_dir: str) -> list[str]:
    """The gates that ``report`` does not meet, as sentences."""
    t = report["totals"]
    total = max(t["input"], 1)
    failures = []
    if "min_kept_fraction" in gates and t["kept"] / total < gates["min_kept_fraction"]:
        failures.append(f"min-kept-fraction: kept {t['kept'] / total:.4f} < {gates['min_kept_fraction']}")
    if "max_failed_shards" in gates and len(t["failed_shards"]) > gates["max_failed_shards"]:
        failures.append(f"max-failed-shards: {len(t['failed_shards'])} failed > {gates['max_failed_shards']}")
    for reason, limit in (gates.get("max_dropped_fraction") or {}).items():
        fraction = t["dropped"].get(reason, 0) / total
        if fraction > limit:
            failures.append(f"max-dropped-fraction {reason}: {fraction:.4f} > {limit}")
    if "min_accuracy" in gates:
        from ..demo.evaluate import evaluate

        accuracy = evaluate(output_dir)["kept_accuracy"]
        if accuracy < gates["min_accuracy"]:
            failures.append(f"min-accuracy: kept-caption accuracy {accuracy:.4f} < {gates['min_accuracy']}")
    return failures


def check_gates(output_dir: str, gates: dict) -> list[str]:
    """Print each failed gate on its own line; returns them (empty when all hold)."""
    path = storage.join(output_dir, REPORT_JSON)
    if not storage.exists(path):
        failures = [f"report: {path} does not exist (the run did not finish)"]
    else:
        failures = failed_gates(json.loads(storage.read_bytes(path)), gates, output_dir)
    for failure in failures:
        print(f"capfilt: gate failed: {failure}", file=sys.stderr)
    return failures


def check_output(output_dir: str, args) -> int:
    gates = gates_from_args(args)
    failures = check_gates(output_dir, gates)
    if not failures:
        print(f"capfilt: {len(gates)} gate(s) hold for {output_dir}", file=sys.stderr)
    return 1 if failures else 0

"""The ``capfilt`` command line: run, select, demo-data, eval, check, report. It parses and dispatches: the
pipeline's ``launch`` runs jobs, and the demo world (``capfilt.demo.commands``, reached only through ``_demo``)
makes demo input and measures against ground truth. It sits above both, so neither imports the other's way."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .pipeline import console
from .pipeline.config import SCORE_RANGES, load_config
from .pipeline.errors import ConfigError, UsageError
from .pipeline.gates import add_gate_arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="capfilt", description="Clean web image-text WebDataset shards with BLIP CapFilt.")
    parser.add_argument("--version", action="version", version=f"capfilt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show third-party warnings and logs")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a named pipeline from pipelines.yaml")
    run.add_argument("pipeline", nargs="?", default="demo")
    run.add_argument("--config", help="pipelines file (default ./pipelines.yaml, else the packaged one)")
    run.add_argument("--input", help="shard pattern: glob or braces, any Beam filesystem")
    run.add_argument("--output", help="output folder, any Beam filesystem")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--overwrite", action="store_true", help="redo shards that are already complete")
    run.add_argument("--strict", action="store_true", help="exit 1 when a shard could not be read or was cut short")
    run.add_argument("--json", action="store_true", help="end with a one-line JSON summary on stdout")

    select = commands.add_parser("select", help="re-select a scored output without running a model")
    select.add_argument("scored_dir", help="a capfilt output folder, best scored with filter.policy score_only")
    select.add_argument("--output", required=True, help="the selection's output folder, any Beam filesystem")
    cut = select.add_mutually_exclusive_group(required=True)
    cut.add_argument("--threshold", type=float, help="keep samples whose best candidate scores at least this")
    cut.add_argument("--keep-fraction", type=float, help="keep this share of the pool (exact global quantile)")
    select.add_argument("--score", choices=tuple(SCORE_RANGES), help="the score to rank by (default: the run's)")
    select.add_argument("--policy", choices=("best", "all"), help="as filter.policy (default: the run's, or best)")
    select.add_argument("--web-margin", type=float, help="as filter.web_margin (default: the run's, same score)")
    select.add_argument(
        "--dedup", choices=("exact", "semantic"), help="keep the best-scored sample of each group of copies"
    )
    select.add_argument("--dedup-eps", type=float, help="semantic: embeddings at cosine >= 1 - this are copies")
    select.add_argument("--overwrite", action="store_true", help="redo shards that are already complete")
    select.add_argument("--json", action="store_true", help="end with a one-line JSON summary on stdout")

    demo = commands.add_parser("demo-data", help="write shards of the procedural demo world")
    demo.add_argument("--output", required=True)
    demo.add_argument("--shards", type=int, default=4)
    demo.add_argument("--samples-per-shard", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--correct-fraction", type=float, default=0.4)
    demo.add_argument(
        "--noise-mix",
        metavar="KIND=W,...",
        help="weights per noise kind instead of --correct-fraction, e.g. correct=0.3,one_word_off=0.5,other_image=0.2",
    )
    demo.add_argument("--world", default="default", help="default, or lookalike: two objects one attribute apart")
    demo.add_argument("--video", action="store_true", help="clips of the world (mp4, some webm) instead of images")
    demo.add_argument(
        "--duplicates",
        type=float,
        default=0.0,
        metavar="F",
        help="copy this fraction of the samples into other shards (same bytes, re-encoded or resized)",
    )
    demo.add_argument(
        "--cuts",
        type=float,
        default=0.0,
        metavar="F",
        help="with --video: this fraction of the clips cut to another scene part-way (the caption names the longer)",
    )

    evaluate = commands.add_parser("eval", help="demo world only: caption quality against ground truth")
    evaluate.add_argument("output_dir")
    evaluate.add_argument("--ablation", action="store_true", help="also BLIP Table 1's four rows")
    evaluate.add_argument("--retrieval", action="store_true", help="train dual encoders on the output: Recall@K")

    check = commands.add_parser("check", help="CI curation gates; exit 1 naming each gate that fails")
    check.add_argument("output_dir")
    add_gate_arguments(check)
    check.add_argument("--json", action="store_true", help="end with a one-line JSON verdict on stdout")

    report = commands.add_parser("report", help="rebuild report.json and report.html from the files on disk")
    report.add_argument("output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1 :]
    console.configure(verbose=any(a in ("-v", "--verbose") for a in argv))
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, tuple(beam_args))
    except (UsageError, ConfigError) as exc:
        print(f"capfilt: error: {exc}", file=sys.stderr)
        return 2


def _demo():
    """The demo world's commands: the one place the command line reaches ``capfilt.demo``."""
    from .demo import commands

    return commands


def _run(args, beam_args: tuple[str, ...]) -> int:
    from .pipeline import launch

    config = load_config(args.pipeline, args.config, args.overrides, input=args.input, output=args.output)
    options = launch.Launch(args.overwrite, args.strict, args.json, beam_args)
    return launch.run(config, options, _demo().WORLD)


def _select(args, beam_args: tuple[str, ...]) -> int:
    from .pipeline import launch
    from .pipeline.select.settings import load_select_config

    scored_dir = launch.absolute_path(args.scored_dir)
    config = load_select_config(
        scored_dir,
        args.threshold,
        args.keep_fraction,
        args.score,
        args.policy,
        args.web_margin,
        args.dedup,
        args.dedup_eps,
    )
    return launch.select(config, args.output, launch.Launch(args.overwrite, json=args.json, beam_args=beam_args))


def _demo_data(args, beam_args: tuple[str, ...]) -> int:
    return _demo().demo_data(
        args.output,
        args.shards,
        args.samples_per_shard,
        args.seed,
        args.correct_fraction,
        args.noise_mix,
        args.world,
        args.video,
        args.duplicates,
        args.cuts,
    )


def _require_report(output_dir: str) -> None:
    from .pipeline import storage
    from .pipeline.report.build import REPORT_JSON, require_output

    require_output(output_dir)
    if not storage.exists(storage.join(output_dir, REPORT_JSON)):
        raise UsageError(f"{output_dir}: no {REPORT_JSON} (the run did not finish; `capfilt report` builds it)")


def _eval(args, beam_args: tuple[str, ...]) -> int:
    _require_report(args.output_dir)
    _demo().print_evaluation(args.output_dir, ablation=args.ablation, retrieval=args.retrieval)
    return 0


def _check(args, beam_args: tuple[str, ...]) -> int:
    from .pipeline.gates import check_gates, gates_from_args

    gates = gates_from_args(args)
    _require_report(args.output_dir)
    failures = check_gates(args.output_dir, gates, lambda folder: _demo().kept_accuracy(folder))
    if not failures:
        console.say(f"capfilt: all gates hold for {args.output_dir}")
    if args.json:
        print(json.dumps({"status": "failed" if failures else "ok", "gates_failed": failures}), flush=True)
    return 1 if failures else 0


def _report(args, beam_args: tuple[str, ...]) -> int:
    from .pipeline.report.build import rebuild_report

    report = rebuild_report(args.output_dir)
    console.say(f"capfilt: report for {report['totals']['shards']} shard(s) in {args.output_dir}")
    return 0


COMMANDS = {
    "run": _run,
    "select": _select,
    "demo-data": _demo_data,
    "eval": _eval,
    "check": _check,
    "report": _report,
}

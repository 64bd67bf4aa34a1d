"""The ``capfilt`` command line: run, demo-data, eval, check, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from .config import RunConfig, load_config
from .errors import ConfigError, UsageError


def demo_root(pipeline: str) -> str:
    """Where a pipeline without input writes its demo shards and output: ./capfilt-demo for ``demo``,
    ./capfilt-NAME for the others, so runs of different pipelines never resume each other's shards."""
    return "capfilt-demo" if pipeline == "demo" else f"capfilt-{pipeline}"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="capfilt", description="Clean web image-text WebDataset shards with BLIP CapFilt.")
    parser.add_argument("--version", action="version", version=f"capfilt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a named pipeline from pipelines.yaml")
    run.add_argument("pipeline", nargs="?", default="demo")
    run.add_argument("--config", help="pipelines file (default ./pipelines.yaml, else the packaged one)")
    run.add_argument("--input", help="shard pattern: glob or braces, any Beam filesystem")
    run.add_argument("--output", help="output folder, any Beam filesystem")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--overwrite", action="store_true", help="redo shards that are already complete")
    run.add_argument("--strict", action="store_true", help="exit 1 when a shard could not be read")

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

    evaluate = commands.add_parser("eval", help="demo world only: caption quality against ground truth")
    evaluate.add_argument("output_dir")
    evaluate.add_argument("--ablation", action="store_true", help="also BLIP Table 1's four rows")
    evaluate.add_argument("--retrieval", action="store_true", help="train dual encoders on the output: Recall@K")

    check = commands.add_parser("check", help="CI curation gates; exit 1 naming each gate that fails")
    check.add_argument("output_dir")
    from .gates import add_gate_arguments

    add_gate_arguments(check)

    report = commands.add_parser("report", help="rebuild report.json and report.html from the files on disk")
    report.add_argument("output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1 :]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("capfilt").setLevel(logging.INFO)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return _run(args, beam_args)
        if args.command == "demo-data":
            from ..demo.commands import demo_data

            return demo_data(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "check":
            return _check(args)
        if args.command == "report":
            return _report(args)
    except (UsageError, ConfigError) as exc:
        print(f"capfilt: error: {exc}", file=sys.stderr)
        return 2
    return 2


def _run(args, beam_args: list[str]) -> int:
    from . import beam_job as job
    from .shard.reader import match_shards

    config = load_config(args.pipeline, args.config, args.overrides, input=args.input, output=args.output)
    _check_models(config)
    _check_beam_args(config, beam_args)
    input_pattern, output_dir = config.input, config.output
    demo_input = input_pattern is None and config.demo_data is not None
    if demo_input:
        from ..demo.commands import write_demo_input

        input_pattern = write_demo_input(config.demo_data, os.path.join(demo_root(config.name), "input"))
    if input_pattern is None:
        raise ConfigError(f"pipeline {config.name!r} has no input: pass --input PATTERN")
    if output_dir is None:
        output_dir = os.path.join(demo_root(config.name), "output") if config.demo_data is not None else None
    if output_dir is None:
        raise ConfigError(f"pipeline {config.name!r} has no output: pass --output DIR")
    input_pattern, output_dir = _absolute(input_pattern), _absolute(output_dir)
    _set_filesystem_options(config, beam_args)
    try:
        shards = match_shards(input_pattern)
    except Exception as exc:  # a bad scheme or an unreachable bucket is a usage problem, found before work
        raise ConfigError(f"--input {input_pattern}: {' '.join(str(exc).split())}") from None
    if not shards:
        raise ConfigError(f"--input {input_pattern}: matches no .tar, .tar.gz or .tgz file")
    _check_unique_names(shards)
    print(f"capfilt: {config.name}: {len(shards)} shard(s) from {input_pattern} -> {output_dir}", file=sys.stderr)
    try:
        job.run(config, shards, output_dir, overwrite=args.overwrite, beam_args=beam_args)
    except Exception as exc:
        print(f"capfilt: run failed: {type(exc).__name__}: {' '.join(str(exc).split())[:2000]}", file=sys.stderr)
        return 1
    return _summarise(config, output_dir, strict=args.strict or config.strict, evaluate=demo_input)


def _check_unique_names(shards: list[str]) -> None:
    from .shard.reader import shard_name

    seen: dict[str, str] = {}
    for path in shards:
        name = shard_name(path)
        if name in seen:
            raise ConfigError(f"--input: {seen[name]} and {path} would both write {name}.tar; rename one")
        seen[name] = path


def _absolute(path: str) -> str:
    """Local paths made absolute: remote workers (portable runners, worker pools) have another cwd."""
    return path if "://" in path else os.path.abspath(path)


def _set_filesystem_options(config: RunConfig, beam_args: list[str]) -> None:
    # Matching happens here, before the pipeline exists: S3/GCS need their options (endpoint, keys) now.
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions([*config.beam_args(), *beam_args]))


def _check_models(config: RunConfig) -> None:
    from ..models.loading import resolve_model

    for key, name in (("captioner.model", config.captioner.model), ("filter.model", config.filter.model)):
        try:
            path = resolve_model(name) if name.startswith("embedded:") else name
        except FileNotFoundError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        looks_local = os.path.isabs(path) or path.startswith((".", "~")) or os.path.exists(path)
        if looks_local and not os.path.isfile(os.path.join(os.path.expanduser(path), "config.json")):
            raise ConfigError(f"{key}: {name!r} is not a model directory (no config.json)")


def _check_beam_args(config: RunConfig, beam_args: list[str]) -> None:
    from apache_beam.options.pipeline_options import StandardOptions

    runners = [a.split("=", 1)[1] for a in [*config.beam_args(), *beam_args] if a.startswith("--runner=")]
    runner = runners[-1] if runners else config.runner
    if "." not in runner and runner not in StandardOptions.KNOWN_RUNNER_NAMES:
        raise ConfigError(
            f"runner {runner!r} is not a Beam runner (known: {', '.join(StandardOptions.KNOWN_RUNNER_NAMES)})"
        )


def _summarise(config: RunConfig, output_dir: str, strict: bool, evaluate: bool) -> int:
    import json

    from . import storage
    from .report.build import REPORT_JSON

    report = json.loads(storage.read_bytes(storage.join(output_dir, REPORT_JSON)))
    t = report["totals"]
    dropped = ", ".join(f"{k} {v}" for k, v in t["dropped"].items()) or "none"
    print(
        f"capfilt: {t['input']} samples in, {t['kept']} kept ({t['kept_web']} web caption, "
        f"{t['kept_synthetic']} synthetic), dropped: {dropped}",
        file=sys.stderr,
    )
    if t["failed_shards"]:
        print(
            f"capfilt: {len(t['failed_shards'])} shard(s) unreadable: {', '.join(t['failed_shards'])}", file=sys.stderr
        )
    print(f"capfilt: output in {output_dir}/, report in {storage.join(output_dir, 'report.html')}", file=sys.stderr)
    if evaluate:  # the demo world carries ground truth; other input does not
        from ..demo.commands import print_evaluation

        print_evaluation(output_dir)
    if config.gates.active():
        from .gates import check_gates

        if check_gates(output_dir, config.gates, _demo_accuracy):
            return 1
    return 1 if strict and t["failed_shards"] else 0


def _eval(args) -> int:
    from . import storage
    from .report.build import REPORT_JSON

    if not storage.exists(storage.join(args.output_dir, REPORT_JSON)):
        raise UsageError(f"{args.output_dir}: no {REPORT_JSON}; is this a finished capfilt output folder?")
    from ..demo.commands import print_evaluation

    print_evaluation(args.output_dir, ablation=args.ablation, retrieval=args.retrieval)
    return 0


def _check(args) -> int:
    from .gates import check_gates, gates_from_args

    gates = gates_from_args(args)
    if check_gates(args.output_dir, gates, _demo_accuracy):
        return 1
    print(f"capfilt: all gates hold for {args.output_dir}", file=sys.stderr)
    return 0


def _demo_accuracy(output_dir: str) -> float:
    """Kept-caption accuracy against ground truth, which only demo-world output carries."""
    from ..demo.commands import kept_accuracy

    return kept_accuracy(output_dir)


def _report(args) -> int:
    from .report.build import rebuild_report

    report = rebuild_report(args.output_dir)
    print(f"capfilt: report for {report['totals']['shards']} shard(s) in {args.output_dir}", file=sys.stderr)
    return 0

"""The ``capfilt`` command line: run, select, demo-data, eval, check, report."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .. import __version__
from . import console
from .config import SCORE_RANGES, RunConfig, load_config
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

    evaluate = commands.add_parser("eval", help="demo world only: caption quality against ground truth")
    evaluate.add_argument("output_dir")
    evaluate.add_argument("--ablation", action="store_true", help="also BLIP Table 1's four rows")
    evaluate.add_argument("--retrieval", action="store_true", help="train dual encoders on the output: Recall@K")

    check = commands.add_parser("check", help="CI curation gates; exit 1 naming each gate that fails")
    check.add_argument("output_dir")
    from .gates import add_gate_arguments

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
        if args.command == "run":
            from .collector import paused

            with paused():  # until the job starts (_run resumes it): Beam's import is most of the time before
                return _run(args, beam_args)
        if args.command == "select":
            return _select(args, beam_args)
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
    from . import collector, preflight
    from .allocator import share_main_arena

    config = load_config(args.pipeline, args.config, args.overrides, input=args.input, output=args.output)
    preflight.check_runner(config, beam_args)
    local = preflight.runs_here(config, beam_args)
    preflight.check_models(config)
    if local:
        preflight.check_device(config.runtime.device)
        config = config.resolved()  # dtype auto: recorded as what this machine runs
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
    shards = _match_input(config, input_pattern, beam_args)
    preflight.check_unique_names(shards)
    preflight.check_output_not_input(shards, output_dir)
    done = [] if args.overwrite else preflight.complete_shards(shards, output_dir, config)
    console.say(f"capfilt: {config.name}: {len(shards)} shard(s) from {input_pattern} -> {output_dir}")
    if done:
        console.say(f"capfilt: {len(done)} shard(s) already complete there, skipped (--overwrite redoes them)")
    _unmark_success(output_dir)
    collector.resume()
    share_main_arena()  # before the thread that runs the job (and on a local run, the models) starts
    stopped, failed = _run_job(config, shards, output_dir, args.overwrite, beam_args, len(shards) - len(done), local)
    if stopped is not None:
        return _interrupted(stopped, shards, output_dir, local)
    if failed:
        return 1
    return _summarise(config, output_dir, args, evaluate=demo_input)


def _select(args, beam_args: list[str]) -> int:
    from . import preflight
    from .select import job
    from .select.settings import load_select_config

    scored_dir, output_dir = _absolute(args.scored_dir), _absolute(args.output)
    config = load_select_config(
        scored_dir, args.threshold, args.keep_fraction, args.score, args.policy, args.web_margin
    )
    shards = [config.shard_path(name) for name in config.names]
    preflight.check_output_not_input(shards, output_dir)
    done = [] if args.overwrite else preflight.complete_shards(shards, output_dir, config)
    cut = f"--threshold {args.threshold}" if args.keep_fraction is None else f"--keep-fraction {args.keep_fraction}"
    console.say(f"capfilt: select {cut} by {config.score}: {len(shards)} shard(s) from {scored_dir} -> {output_dir}")
    if done:
        console.say(f"capfilt: {len(done)} shard(s) already complete there, skipped (--overwrite redoes them)")
    _unmark_success(output_dir)
    stopped, failed = _stoppable(lambda: job.run(config, output_dir, args.overwrite, beam_args, console.VERBOSE))
    if stopped is not None:
        return _interrupted(stopped, shards, output_dir, job.runs_here(beam_args))
    if failed:
        return 1
    return _summarise(None, output_dir, args, evaluate=False)


def _match_input(config: RunConfig, pattern: str, beam_args: list[str]) -> list[str]:
    from .shard.reader import match_shards

    _set_filesystem_options(config, beam_args)
    try:
        shards = match_shards(pattern)
    except Exception as exc:  # a bad scheme or an unreachable bucket is a usage problem, found before work
        raise ConfigError(f"--input {pattern}: {' '.join(str(exc).split())}") from None
    if not shards:
        raise ConfigError(f"--input {pattern}: matches no .tar, .tar.gz or .tgz file")
    return shards


def _run_job(
    config: RunConfig,
    shards: list[str],
    output_dir: str,
    overwrite: bool,
    beam_args: list[str],
    to_do: int,
    local: bool,
) -> tuple[int | None, bool]:
    """Run the Beam job with a progress line on local runs; returns what ``_stoppable`` does."""
    import shutil
    import tempfile

    from . import beam_job as job
    from .report.progress import ProgressPrinter

    progress_dir = tempfile.mkdtemp(prefix="capfilt-progress-") if local else None
    printer = ProgressPrinter(progress_dir, to_do, console.say) if progress_dir else None
    try:
        stopped, failed = _stoppable(
            lambda: job.run(config, shards, output_dir, overwrite, beam_args, progress_dir, verbose=console.VERBOSE),
            tick=printer.tick if printer else None,
        )
        if printer and stopped is None and not failed:
            printer.tick(final=True)
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    return stopped, failed


def _stoppable(job, tick=None) -> tuple[int | None, bool]:
    """Run the Beam ``job`` so that SIGINT/SIGTERM stop it cleanly; returns the signal number when one did, and
    whether it failed (said in one line; ``_SUCCESS`` stays unwritten)."""
    from .interrupt import run_stoppable

    failure: list[BaseException] = []

    def work() -> None:
        try:
            job()
        except Exception as exc:
            failure.append(exc)

    stopped = run_stoppable(work, tick=tick or (lambda: None))
    if failure and stopped is None:
        exc = failure[0]
        console.say(f"capfilt: run failed: {type(exc).__name__}: {' '.join(str(exc).split())[:2000]}")
    return stopped, bool(failure)


def _unmark_success(output_dir: str) -> None:
    """A run that starts makes the folder unfinished until its own report is written: an orchestrator
    watching ``_SUCCESS`` must not see an earlier run's while this one is under way or after it failed."""
    from apache_beam.io.filesystems import FileSystems

    from . import storage
    from .report.build import SUCCESS

    marker = storage.join(output_dir, SUCCESS)
    if storage.exists(marker):
        FileSystems.delete([marker])


def _interrupted(signum: int, shards: list[str], output_dir: str, local: bool) -> int:
    from . import storage
    from .interrupt import EXIT_CODES
    from .shard.process import shard_done

    complete = sum(shard_done(path, output_dir) for path in shards)
    if local:  # the workers are gone, so their temporary files can go too
        storage.remove_temp_dir(output_dir)
        console.say(f"capfilt: interrupted: {complete}/{len(shards)} shards complete; rerun to resume")
    else:
        console.say(
            f"capfilt: interrupted: {complete}/{len(shards)} shards complete so far; stopped waiting, but the job "
            "may still run on its cluster (cancel it there); rerun to resume"
        )
    return EXIT_CODES[signum]


def _absolute(path: str) -> str:
    """Local paths made absolute: remote workers (portable runners, worker pools) have another cwd."""
    return path if "://" in path else os.path.abspath(path)


def _set_filesystem_options(config: RunConfig, beam_args: list[str]) -> None:
    # Matching happens here, before the pipeline exists: S3/GCS need their options (endpoint, keys) now.
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions([*config.beam_args(), *beam_args]))


def _summarise(config: RunConfig, output_dir: str, args, evaluate: bool) -> int:
    from . import storage
    from .report.build import REPORT_JSON

    report = json.loads(storage.read_bytes(storage.join(output_dir, REPORT_JSON)))
    t = report["totals"]
    dropped = ", ".join(f"{k} {v}" for k, v in t["dropped"].items()) or "none"
    console.say(
        f"capfilt: {t['input']} samples in, {t['kept']} kept ({t['kept_web']} web caption, "
        f"{t['kept_synthetic']} synthetic), dropped: {dropped}"
    )
    for kind in ("failed_shards", "truncated_shards"):
        if t[kind]:
            what = "unreadable" if kind == "failed_shards" else "cut short"
            console.say(f"capfilt: {len(t[kind])} shard(s) {what}: {', '.join(t[kind])}")
    console.say(f"capfilt: output in {output_dir}/, report in {storage.join(output_dir, 'report.html')}")
    if evaluate:  # the demo world carries ground truth; other input does not
        from ..demo.commands import print_evaluation

        print_evaluation(output_dir)
    failures = []
    if config is not None and config.gates.active():
        from .gates import check_gates

        failures = check_gates(output_dir, config.gates, _demo_accuracy)
    strict = (getattr(args, "strict", False) or (config is not None and config.strict)) and bool(
        t["failed_shards"] or t["truncated_shards"]
    )
    code = 1 if failures or strict else 0
    if args.json:
        summary = {
            "status": "ok" if code == 0 else "failed",
            "output": output_dir,
            **{k: t[k] for k in ("shards", "input", "kept", "kept_web", "kept_synthetic", "dropped")},
            "failed_shards": t["failed_shards"],
            "truncated_shards": t["truncated_shards"],
            "gates_failed": failures,
        }
        print(json.dumps(summary, sort_keys=True), flush=True)
    return code


def _require_report(output_dir: str) -> None:
    from . import storage
    from .report.build import REPORT_JSON, require_output

    require_output(output_dir)
    if not storage.exists(storage.join(output_dir, REPORT_JSON)):
        raise UsageError(f"{output_dir}: no {REPORT_JSON} (the run did not finish; `capfilt report` builds it)")


def _eval(args) -> int:
    _require_report(args.output_dir)
    from ..demo.commands import print_evaluation

    print_evaluation(args.output_dir, ablation=args.ablation, retrieval=args.retrieval)
    return 0


def _check(args) -> int:
    from .gates import check_gates, gates_from_args

    gates = gates_from_args(args)
    _require_report(args.output_dir)
    failures = check_gates(args.output_dir, gates, _demo_accuracy)
    if not failures:
        console.say(f"capfilt: all gates hold for {args.output_dir}")
    if args.json:
        print(json.dumps({"status": "failed" if failures else "ok", "gates_failed": failures}), flush=True)
    return 1 if failures else 0


def _demo_accuracy(output_dir: str) -> float:
    """Kept-caption accuracy against ground truth, which only demo-world output carries."""
    from ..demo.commands import kept_accuracy

    return kept_accuracy(output_dir)


def _report(args) -> int:
    from .report.build import rebuild_report

    report = rebuild_report(args.output_dir)
    console.say(f"capfilt: report for {report['totals']['shards']} shard(s) in {args.output_dir}")
    return 0

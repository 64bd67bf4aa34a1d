"""Launching a job from what the command line asked: the checks before any work, the Beam job in a thread that
SIGINT/SIGTERM stop cleanly (with the progress line on local runs), and the summary at the end."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from . import collector, console, preflight, storage
from .config import DemoDataConfig, RunConfig
from .errors import ConfigError
from .interrupt import EXIT_CODES, run_stoppable
from .resume import complete_shards, shard_done
from .select.settings import SelectConfig
from .shard.reader import match_shards, shard_name


@dataclass(frozen=True)
class Launch:
    """How to launch a job.

    Args:
        overwrite: redo shards that are already complete.
        strict: exit 1 when a shard could not be read or was cut short.
        json: end with a one-line JSON summary on stdout.
        beam_args: Beam's own flags, after the config's.
    """

    overwrite: bool = False
    strict: bool = False
    json: bool = False
    beam_args: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DemoWorld:
    """What a run of a pipeline with ``demo_data`` and no input needs from ``capfilt.demo``, which the pipeline
    never imports: the command line hands it in.

    Args:
        write_input: writes the demo shards ``DemoDataConfig`` describes into a folder; returns their pattern.
        print_evaluation: prints (and records in the report) quality against the world's ground truth.
        kept_accuracy: correct kept captions / kept, for the ``min_accuracy`` gate.
    """

    write_input: Callable[[DemoDataConfig, str], str]
    print_evaluation: Callable[[str], None]
    kept_accuracy: Callable[[str], float]


def demo_root(pipeline: str) -> str:
    """Where a pipeline without input writes its demo shards and output: ./capfilt-demo for ``demo``,
    ./capfilt-NAME for the others, so runs of different pipelines never resume each other's shards."""
    return "capfilt-demo" if pipeline == "demo" else f"capfilt-{pipeline}"


def run(config: RunConfig, launch: Launch, demo: DemoWorld | None = None) -> int:
    """``capfilt run``: checks, the job, the summary; returns the exit code."""
    with collector.paused():  # until the job starts: Beam's import is most of the time before it
        return _run(config, launch, demo)


def _run(config: RunConfig, launch: Launch, demo: DemoWorld | None) -> int:
    from . import beam_job
    from .allocator import share_main_arena
    from .runners import runs_here

    beam_args = list(launch.beam_args)
    preflight.check_runner(config, beam_args)
    local = runs_here(beam_job.run_options(config, beam_args))
    preflight.check_models(config)
    if local:
        preflight.check_device(config.runtime.device)
        config = config.resolved()  # dtype auto: recorded as what this machine runs
    input_pattern, output_dir = config.input, config.output
    demo_input = input_pattern is None and config.demo_data is not None and demo is not None
    if demo_input:
        input_pattern = demo.write_input(config.demo_data, os.path.join(demo_root(config.name), "input"))
    if input_pattern is None:
        raise ConfigError(f"pipeline {config.name!r} has no input: pass --input PATTERN")
    if output_dir is None and config.demo_data is not None:
        output_dir = os.path.join(demo_root(config.name), "output")
    if output_dir is None:
        raise ConfigError(f"pipeline {config.name!r} has no output: pass --output DIR")
    input_pattern, output_dir = absolute_path(input_pattern), absolute_path(output_dir)
    shards = _match_input(config, input_pattern, beam_args)
    preflight.check_unique_names(shards)
    to_do = _prepare_output(shards, output_dir, config, launch.overwrite, f"{config.name}: ", input_pattern)
    collector.resume()
    share_main_arena()  # before the thread that runs the job (and on a local run, the models) starts
    progress_dir = tempfile.mkdtemp(prefix="capfilt-progress-") if local else None
    try:
        job = partial(
            beam_job.run, config, shards, output_dir, launch.overwrite, beam_args, progress_dir, console.VERBOSE
        )
        stopped, failed = _run_job(job, progress_dir, to_do)
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    if stopped is not None:
        return _interrupted(stopped, shards, output_dir, local)
    if failed:
        return 1
    # The demo world carries ground truth; other input does not.
    return _summarise(output_dir, launch, config, demo, evaluate=demo_input)


def select(config: SelectConfig, output_dir: str, launch: Launch) -> int:
    """``capfilt select``: checks, the job, the summary; returns the exit code."""
    from .runners import runs_here
    from .select import job

    beam_args = list(launch.beam_args)
    output_dir = absolute_path(output_dir)
    shards = [config.shard_path(name) for name in config.names]
    if config.keep_fraction is None:
        cut = f"--threshold {config.threshold}"
    else:
        cut = f"--keep-fraction {config.keep_fraction}"
    dedup = f" --dedup {config.dedup}" if config.dedup else ""
    what = f"select {cut}{dedup} by {config.score}: "
    _prepare_output(shards, output_dir, config, launch.overwrite, what, config.scored_dir)
    stopped, failed = _run_job(partial(job.run, config, output_dir, launch.overwrite, beam_args, console.VERBOSE))
    if stopped is not None:
        return _interrupted(stopped, shards, output_dir, runs_here(job.select_options(beam_args)))
    if failed:
        return 1
    return _summarise(output_dir, launch)


def absolute_path(path: str) -> str:
    """Local paths made absolute: remote workers (portable runners, worker pools) have another cwd."""
    return path if "://" in path else os.path.abspath(path)


def _prepare_output(shards: list[str], output_dir: str, settings, overwrite: bool, what: str, source: str) -> int:
    """Refuse an output that holds the input, say what will run, and mark the folder unfinished; returns how
    many shards are still to do."""
    preflight.check_output_not_input(shards, output_dir)
    names = [shard_name(s) for s in shards]
    done = [] if overwrite else complete_shards(names, output_dir, settings)
    console.say(f"capfilt: {what}{len(shards)} shard(s) from {source} -> {output_dir}")
    if done:
        console.say(f"capfilt: {len(done)} shard(s) already complete there, skipped (--overwrite redoes them)")
    _unmark_success(output_dir)
    return len(shards) - len(done)


def _match_input(config: RunConfig, pattern: str, beam_args: list[str]) -> list[str]:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    # Matching happens here, before the pipeline exists: S3/GCS need their options (endpoint, keys) now.
    FileSystems.set_options(PipelineOptions([*config.beam_args(), *beam_args]))
    try:
        shards = match_shards(pattern)
    except Exception as exc:  # a bad scheme or an unreachable bucket is a usage problem, found before work
        raise ConfigError(f"--input {pattern}: {' '.join(str(exc).split())}") from None
    if not shards:
        raise ConfigError(f"--input {pattern}: matches no .tar, .tar.gz or .tgz file")
    return shards


def _run_job(job: Callable[[], None], progress_dir: str | None = None, to_do: int = 0) -> tuple[int | None, bool]:
    """Run the Beam ``job`` so that SIGINT/SIGTERM stop it cleanly, with a progress line when ``progress_dir``
    (a local run's) is given; returns the signal number when one stopped it, and whether it failed (said in one
    line; ``_SUCCESS`` stays unwritten)."""
    from .report.progress import ProgressPrinter

    printer = ProgressPrinter(progress_dir, to_do, console.say) if progress_dir else None
    failure: list[BaseException] = []

    def work() -> None:
        try:
            job()
        except Exception as exc:
            failure.append(exc)

    stopped = run_stoppable(work, tick=printer.tick if printer else (lambda: None))
    if failure and stopped is None:
        exc = failure[0]
        console.say(f"capfilt: run failed: {type(exc).__name__}: {' '.join(str(exc).split())[:2000]}")
    elif printer and stopped is None:
        printer.tick(final=True)
    return stopped, bool(failure)


def _unmark_success(output_dir: str) -> None:
    """A run that starts makes the folder unfinished until its own report is written: an orchestrator
    watching ``_SUCCESS`` must not see an earlier run's while this one is under way or after it failed."""
    from apache_beam.io.filesystems import FileSystems

    from .report.build import SUCCESS

    marker = storage.join(output_dir, SUCCESS)
    if storage.exists(marker):
        FileSystems.delete([marker])


def _interrupted(signum: int, shards: list[str], output_dir: str, local: bool) -> int:
    complete = sum(shard_done(output_dir, shard_name(path)) for path in shards)
    if local:  # the workers are gone, so their temporary files can go too
        storage.remove_temp_dir(output_dir)
        console.say(f"capfilt: interrupted: {complete}/{len(shards)} shards complete; rerun to resume")
    else:
        console.say(
            f"capfilt: interrupted: {complete}/{len(shards)} shards complete so far; stopped waiting, but the job "
            "may still run on its cluster (cancel it there); rerun to resume"
        )
    return EXIT_CODES[signum]


def _summarise(
    output_dir: str,
    launch: Launch,
    config: RunConfig | None = None,
    demo: DemoWorld | None = None,
    evaluate: bool = False,
) -> int:
    """Say what the job did (and with ``evaluate``, how it did against the demo world's ground truth), check the
    run's gates; returns the exit code."""
    from .gates import check_gates
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
    if evaluate:
        demo.print_evaluation(output_dir)
    failures = []
    if config is not None and config.gates.active():
        failures = check_gates(output_dir, config.gates, demo.kept_accuracy if demo else None)
    strict = (launch.strict or (config is not None and config.strict)) and bool(
        t["failed_shards"] or t["truncated_shards"]
    )
    code = 1 if failures or strict else 0
    if launch.json:
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

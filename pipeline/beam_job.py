"""The Beam pipeline: list shards, spread them over workers, clean each, sum stats, write the report."""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, PortableOptions

from .config import RunConfig
from .cores import usable_cores
from .report.build import write_report
from .shard.clean_shard_fn import CleanShardFn, sum_stats

LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def runner_name(options: PipelineOptions) -> str:
    return (options.get_all_options().get("runner") or "").rsplit(".", 1)[-1]


def runs_here(options: PipelineOptions) -> bool:
    """The workers run on this machine: a local runner, or the portable runner with an embedded job service
    and in-process (LOOPBACK) workers."""
    if runner_name(options) in LOCAL_RUNNERS:
        return True
    portable = options.view_as(PortableOptions)
    return portable.job_endpoint == "embed" and portable.environment_type == "LOOPBACK"


def torch_threads(config: RunConfig, options: PipelineOptions) -> int:
    """Threads per worker process: set in config, or on a local run the usable cores shared among worker
    processes (so two processes on two cores do not each start two threads); elsewhere torch's own default."""
    if config.runtime.threads:
        return config.runtime.threads
    direct = options.view_as(DirectOptions)
    if runner_name(options) not in LOCAL_RUNNERS:
        return 0
    processes = direct.direct_num_workers if direct.direct_running_mode == "multi_processing" else 1
    return max(1, usable_cores() // max(processes, 1))


def build(
    p: beam.Pipeline,
    config: RunConfig,
    shards: list[str],
    output_dir: str,
    overwrite: bool,
    threads: int,
    progress_dir: str | None = None,
):
    """Wire the run into ``p``; returns the PCollection of summed stats."""
    clean = CleanShardFn(config, output_dir, overwrite, threads, progress_dir)
    stats = (
        p
        | "ListShards" >> beam.Create(shards)
        | "SpreadShards" >> beam.Reshuffle()
        | "CleanShards" >> beam.ParDo(clean)
        | "SumStats" >> beam.CombineGlobally(sum_stats)
    )
    _ = stats | "WriteReport" >> beam.Map(lambda total: write_report(output_dir, total, config.to_dict()))
    return stats


def run(
    config: RunConfig,
    shards: list[str],
    output_dir: str,
    overwrite: bool = False,
    beam_args: list[str] = (),
    progress_dir: str | None = None,
    verbose: bool = False,
) -> None:
    """Run the pipeline to completion with the config's runner and options, then ``beam_args``.

    Local worker processes log only warnings unless ``verbose`` (their INFO lines would interleave with the
    progress line); a flag in ``beam_args`` still wins, and cluster runs keep their workers' own level.
    """
    options = PipelineOptions([*config.beam_args(), *beam_args])
    if runs_here(options) and not verbose:
        options = PipelineOptions(["--default_sdk_harness_log_level=WARNING", *config.beam_args(), *beam_args])
    threads = torch_threads(config, options)
    with beam.Pipeline(runner=_local_process_runner(options, verbose), options=options) as p:
        build(p, config, shards, output_dir, overwrite, threads, progress_dir)


def _local_process_runner(options: PipelineOptions, verbose: bool):
    """For a local multi-process run, the FnApiRunner with capfilt's worker entry point (``worker_main``) in
    place of Beam's; None (the runner the options name) otherwise."""
    direct = options.view_as(DirectOptions)
    if runner_name(options) not in ("DirectRunner", "FnApiRunner") or direct.direct_running_mode != "multi_processing":
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    command = f"{sys.executable} -m capfilt.pipeline.worker_main" + (" --verbose" if verbose else "")
    direct.direct_running_mode = "in_memory"  # else the runner swaps in Beam's own worker command
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))

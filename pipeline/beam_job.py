"""The Beam pipeline of ``capfilt run``: list shards, spread them over workers, clean each, sum stats, write the
report."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from .config import RunConfig
from .cores import usable_cores
from .report.build import write_report
from .runners import LOCAL_RUNNERS, job_options, job_pipeline, runner_name
from .shard.clean_shard_fn import CleanShardFn
from .shard_job import write_shards


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
    paths = p | "ListShards" >> beam.Create(shards)
    return write_shards(paths, "CleanShards", clean, lambda total: write_report(output_dir, total, config.to_dict()))


def run_options(config: RunConfig, beam_args: list[str] = (), verbose: bool = False) -> PipelineOptions:
    """The run's Beam options: the config's runner and options, then ``beam_args``."""
    return job_options([*config.beam_args(), *beam_args], verbose)


def run(
    config: RunConfig,
    shards: list[str],
    output_dir: str,
    overwrite: bool = False,
    beam_args: list[str] = (),
    progress_dir: str | None = None,
    verbose: bool = False,
) -> None:
    """Run the pipeline to completion with the config's runner and options, then ``beam_args``."""
    options = run_options(config, beam_args, verbose)
    threads = torch_threads(config, options)
    with job_pipeline(options, verbose) as p:
        build(p, config, shards, output_dir, overwrite, threads, progress_dir)

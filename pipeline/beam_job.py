"""The Beam pipeline: list shards, spread them over workers, clean each, sum stats, write the report."""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from .config import RunConfig
from .report.build import write_report
from .shard.clean_shard_fn import CleanShardFn, sum_stats

LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (set by ``taskset``, cpusets and container runtimes),
    which ``os.cpu_count()`` ignores."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def torch_threads(config: RunConfig, options: PipelineOptions) -> int:
    """Threads per worker process: set in config, or on a local run the usable cores shared among worker
    processes (so two processes on two cores do not each start two threads); elsewhere torch's own default."""
    if config.runtime.threads:
        return config.runtime.threads
    runner = options.get_all_options().get("runner") or ""
    direct = options.view_as(DirectOptions)
    if runner.rsplit(".", 1)[-1] not in LOCAL_RUNNERS:
        return 0
    processes = direct.direct_num_workers if direct.direct_running_mode == "multi_processing" else 1
    return max(1, usable_cores() // max(processes, 1))


def build(p: beam.Pipeline, config: RunConfig, shards: list[str], output_dir: str, overwrite: bool, threads: int):
    """Wire the run into ``p``; returns the PCollection of summed stats."""
    stats = (
        p
        | "ListShards" >> beam.Create(shards)
        | "SpreadShards" >> beam.Reshuffle()
        | "CleanShards" >> beam.ParDo(CleanShardFn(config, output_dir, overwrite, threads, len(shards)))
        | "SumStats" >> beam.CombineGlobally(sum_stats)
    )
    _ = stats | "WriteReport" >> beam.Map(lambda total: write_report(output_dir, total, config.to_dict()))
    return stats


def run(
    config: RunConfig, shards: list[str], output_dir: str, overwrite: bool = False, beam_args: list[str] = ()
) -> None:
    """Run the pipeline to completion with the config's runner and options, then ``beam_args``."""
    options = PipelineOptions([*config.beam_args(), *beam_args])
    threads = torch_threads(config, options)
    with beam.Pipeline(options=options) as p:
        build(p, config, shards, output_dir, overwrite, threads)

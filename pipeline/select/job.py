"""The Beam pipeline of ``capfilt select``: the cut (a constant, or the global quantile), then every shard
rewritten against it as a side input, stats summed, the report written."""

from __future__ import annotations

import math

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton

from .. import beam_job
from ..report.build import write_report
from ..shard.clean_shard_fn import sum_stats
from .cut import Cut, GlobalCut
from .settings import SelectConfig
from .shard import SelectShardFn, selection_keys


def build(p: beam.Pipeline, config: SelectConfig, output_dir: str, overwrite: bool):
    """Wire the selection into ``p``; returns the PCollection of summed stats."""
    names = p | "ListShards" >> beam.Create(config.names)
    if config.keep_fraction is None:
        cut = p | "Threshold" >> beam.Create([Cut(threshold=config.threshold)])
    else:
        cut = (
            names
            | "SpreadScores" >> beam.Reshuffle()
            | "ReadScores" >> beam.Map(selection_keys, config)
            | "Quantile" >> GlobalCut(config.keep_fraction)
        )
    stats = (
        names
        | "SpreadShards" >> beam.Reshuffle()
        | "SelectShards" >> beam.ParDo(SelectShardFn(config, output_dir, overwrite), AsSingleton(cut))
        | "SumStats" >> beam.CombineGlobally(sum_stats)
    )
    _ = stats | "WriteReport" >> beam.Map(_write_report, AsSingleton(cut), config, output_dir)
    return stats


def _write_report(total, cut: Cut, config: SelectConfig, output_dir: str) -> None:
    threshold = cut.threshold if math.isfinite(cut.threshold) else None  # an empty pool cuts nowhere
    write_report(output_dir, total, config.report_config(threshold, cut.pool, cut.target))


def _options(beam_args: list[str], verbose: bool = False) -> PipelineOptions:
    quiet = [] if verbose else ["--default_sdk_harness_log_level=WARNING"]
    return PipelineOptions(["--runner=FnApiRunner", *quiet, *beam_args])


def runs_here(beam_args: list[str]) -> bool:
    return beam_job.runs_here(_options(beam_args))


def run(config: SelectConfig, output_dir: str, overwrite: bool, beam_args: list[str], verbose: bool = False) -> None:
    """Run the selection with the FnApiRunner unless ``beam_args`` name another runner."""
    with beam.Pipeline(options=_options(beam_args, verbose)) as p:
        build(p, config, output_dir, overwrite)

"""The Beam pipeline of ``capfilt select``: with ``--dedup``, the pool's duplicates (``dedup``); the cut over the
rest (a constant, or the global quantile); then every shard rewritten with its duplicates and against the cut (a
side input), stats summed, the report written."""

from __future__ import annotations

import math

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton

from ..report.build import write_report
from ..runners import job_options, job_pipeline
from ..shard_job import write_shards
from .cut import Cut, GlobalCut
from .dedup import ExactDuplicates, SemanticDuplicates
from .groups import with_kept_copies
from .settings import SelectConfig
from .shard import SelectShardFn, selection_keys


def build(p: beam.Pipeline, config: SelectConfig, output_dir: str, overwrite: bool):
    """Wire the selection into ``p``; returns the PCollection of summed stats."""
    names = p | "ListShards" >> beam.Create(config.names)
    shards = with_duplicates(names, config, output_dir)
    if config.keep_fraction is None:
        cut = p | "Threshold" >> beam.Create([Cut(threshold=config.threshold)])
    else:
        cut = (
            shards
            | "SpreadScores" >> beam.Reshuffle()
            | "ReadScores" >> beam.Map(selection_keys, config)
            | "Quantile" >> GlobalCut(config.keep_fraction)
        )
    select = SelectShardFn(config, output_dir, overwrite)
    cut = AsSingleton(cut)
    return write_shards(shards, "SelectShards", select, _write_report, [cut], [cut, config, output_dir])


def with_duplicates(names, config: SelectConfig, output_dir: str):
    """``(name, {key: kept copy})`` for every shard name: its samples that ``--dedup`` found to be copies."""
    if config.dedup is None:
        return names | "NoDuplicates" >> beam.Map(lambda name: (name, {}))
    if config.dedup == "exact":
        pairs = names | "Exact" >> ExactDuplicates(config)
    else:
        pairs = names | "Semantic" >> SemanticDuplicates(config, config.dedup_eps, output_dir, config.seed)
    keyed = names | "KeyNames" >> beam.Map(lambda name: (name, None))
    return (
        {"names": keyed, "duplicates": pairs}
        | "DuplicatesPerShard" >> beam.CoGroupByKey()
        | "AsDicts" >> beam.Map(lambda item: (item[0], dict(sorted(item[1]["duplicates"]))))
    )


def _write_report(total, cut: Cut, config: SelectConfig, output_dir: str) -> None:
    threshold = cut.threshold if math.isfinite(cut.threshold) else None  # an empty pool cuts nowhere
    if config.dedup is not None:
        total.examples = with_kept_copies(total.examples, config)
    write_report(output_dir, total, config.report_config(threshold, cut.pool, cut.target))


def select_options(beam_args: list[str], verbose: bool = False) -> PipelineOptions:
    """The selection's Beam options: the FnApiRunner unless ``beam_args`` name another runner."""
    return job_options(["--runner=FnApiRunner", *beam_args], verbose)


def run(config: SelectConfig, output_dir: str, overwrite: bool, beam_args: list[str], verbose: bool = False) -> None:
    with job_pipeline(select_options(beam_args, verbose), verbose) as p:
        build(p, config, output_dir, overwrite)

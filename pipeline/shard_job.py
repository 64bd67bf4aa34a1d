"""What every capfilt job is made of: a DoFn that writes one output shard per input shard (skipping shards
already complete), and the wiring ListShards → SpreadShards → (write shards) → SumStats → WriteReport. ``run``
and ``select`` are this shape; a new job over shards is a new ``ShardFn.write_shard``, not a copy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from .interrupt import raise_if_stopping
from .resume import read_done_stats, shard_done
from .shard.reader import shard_name
from .stats import Stats, sum_stats

NAMESPACE = "capfilt"


class ShardFn(beam.DoFn):
    """Takes one shard (its path, or its name where ``shard_of`` says so), writes its output shard, emits its
    Stats; Beam counters in the ``capfilt`` namespace count shards and samples by outcome.

    A shard whose stats file exists in the output is skipped (its stored stats are emitted, after checking
    that ``config`` made them) unless ``overwrite``. Subclasses implement ``write_shard``.

    Args:
        config: the job's validated settings (``fingerprint()``, ``output_settings()``).
        output_dir: where output shards go.
        overwrite: redo shards that are already complete.
    """

    def __init__(self, config, output_dir: str, overwrite: bool = False):
        self.config, self.output_dir, self.overwrite = config, output_dir, overwrite
        self._counters = {}

    def shard_of(self, element) -> str:
        """The output shard's name for an element (a path by default)."""
        return shard_name(element)

    def write_shard(self, element, *side_inputs) -> Stats:
        raise NotImplementedError

    def process(self, element, *side_inputs):
        name = self.shard_of(element)
        if not self.overwrite and shard_done(self.output_dir, name):
            self._counter("shards_skipped").inc()
            yield read_done_stats(self.output_dir, name, self.config)
            return
        raise_if_stopping()
        stats = self.write_shard(element, *side_inputs)
        self._record(stats)
        yield stats

    def _counter(self, name: str):
        if name not in self._counters:
            self._counters[name] = Metrics.counter(NAMESPACE, name)
        return self._counters[name]

    def _record(self, stats: Stats) -> None:
        self._counter("shards_failed" if stats.failed_shards else "shards_done").inc()
        self._counter("samples_in").inc(stats.input)
        self._counter("kept_web").inc(stats.kept_web)
        self._counter("kept_synthetic").inc(stats.kept_synthetic)
        for reason, count in stats.dropped.items():
            self._counter(f"dropped_{reason}").inc(count)


def write_shards(
    shards,
    label: str,
    fn: ShardFn,
    report: Callable[..., None],
    side_inputs: Sequence = (),
    report_inputs: Sequence = (),
):
    """Wire a job's shards (a PCollection of ``fn``'s elements) through ``fn`` under ``label``, sum the stats
    and hand the total to ``report(total, *report_inputs)``; returns the PCollection of the total."""
    stats = (
        shards
        | "SpreadShards" >> beam.Reshuffle()
        | label >> beam.ParDo(fn, *side_inputs)
        | "SumStats" >> beam.CombineGlobally(sum_stats)
    )
    _ = stats | "WriteReport" >> beam.Map(report, *report_inputs)
    return stats

"""The Beam DoFn that cleans whole shards, with the models loaded once per worker process."""

from __future__ import annotations

import gc
import logging
import time
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from ..config import RunConfig
from ..report.progress import Progress
from ..stats import Stats
from .process import process_shard, read_stats, shard_done
from .reader import shard_name

LOG = logging.getLogger("capfilt")
NAMESPACE = "capfilt"


class LoadedModels:
    """The captioner and ITM scorer of one worker process (a class, so ``Shared`` can hold a weak reference)."""

    def __init__(self, captioner, scorer):
        self.captioner, self.scorer = captioner, scorer


def load_models(config: RunConfig, threads: int) -> LoadedModels:
    import torch

    from ...models.captioner import Captioner
    from ...models.itm import ItmScorer

    if threads:
        torch.set_num_threads(threads)
    runtime = dict(
        device=config.runtime.device, dtype=config.runtime.dtype, trust_remote_code=config.runtime.trust_remote_code
    )
    c, f = config.captioner, config.filter
    captioner = Captioner.from_pretrained(
        c.model,
        **runtime,
        prompt=c.prompt,
        num_captions=c.num_captions,
        top_p=c.top_p,
        min_length=c.min_length,
        max_length=c.max_length,
    )
    scorer = ItmScorer.from_pretrained(f.model, **runtime, batch_size=f.batch_size, max_text_tokens=f.max_text_tokens)
    # torch, transformers and Beam leave ~3500 modules of long-lived objects. Freezing them keeps the cyclic
    # collector from rescanning them in every full collection, and cuts a worker process's exit (where the
    # interpreter's final collections walked them all) from ~1.3 s to ~0.2 s; the local multi-process runner
    # stops its workers one after another, so that was paid once per worker at the end of every run.
    gc.freeze()
    return LoadedModels(captioner, scorer)


class CleanShardFn(beam.DoFn):
    """Takes a shard path, writes its cleaned output, and emits its Stats.

    A shard whose stats file exists is skipped (its stored stats are emitted) unless ``overwrite``.
    Models load on the first shard that needs them, once per process, shared by its threads.

    Args:
        config: the validated run configuration.
        output_dir: where output shards go.
        overwrite: redo shards that are already complete.
        threads: torch intra-op threads per process (0 leaves torch's default).
        total_shards: shards in the run, for the progress line's ETA.
    """

    def __init__(
        self, config: RunConfig, output_dir: str, overwrite: bool = False, threads: int = 0, total_shards: int = 0
    ):
        self.config, self.output_dir, self.overwrite, self.threads = config, output_dir, overwrite, threads
        self.total_shards = total_shards
        self._run_id = uuid.uuid4().hex  # set at construction, so it travels with the pickled DoFn
        self._shared = Shared()
        self._models = None
        self._counters = {}

    def _counter(self, name: str):
        if name not in self._counters:
            self._counters[name] = Metrics.counter(NAMESPACE, name)
        return self._counters[name]

    def process(self, path: str):
        progress = Progress.for_run(self._run_id, self.total_shards)
        if not self.overwrite and shard_done(path, self.output_dir):
            self._counter("shards_skipped").inc()
            progress.skipped()
            yield read_stats(path, self.output_dir)
            return
        if self._models is None:
            tag = repr((self.config.captioner, self.config.filter, self.config.runtime, self.threads))
            self._models = self._shared.acquire(lambda: load_models(self.config, self.threads), tag=tag)
        started = time.monotonic()
        stats = process_shard(path, self.output_dir, self.config, self._models)
        self._record(stats)
        LOG.info(progress.finished(shard_name(path), stats, time.monotonic() - started))
        yield stats

    def _record(self, stats: Stats) -> None:
        self._counter("shards_failed" if stats.failed_shards else "shards_done").inc()
        self._counter("samples_in").inc(stats.input)
        self._counter("kept_web").inc(stats.kept_web)
        self._counter("kept_synthetic").inc(stats.kept_synthetic)
        for reason, count in stats.dropped.items():
            self._counter(f"dropped_{reason}").inc(count)


def sum_stats(items) -> Stats:
    total = Stats()
    for item in items:
        total = total + item
    return total

"""The Beam DoFn that cleans whole shards, with the models loaded once per worker process."""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from .. import collector
from ..config import RunConfig
from ..cores import decode_threads
from ..interrupt import raise_if_stopping
from ..report.progress import WorkerProgress
from ..stats import Stats
from .process import process_shard, read_done_stats, shard_done
from .reader import shard_name

LOG = logging.getLogger("capfilt.worker")  # a line per shard in a cluster's worker logs; quiet on local runs
NAMESPACE = "capfilt"


class LoadedModels:
    """The captioner, ITM scorer and similarity scorer (None when off) of one worker process (a class, so
    ``Shared`` can hold a weak reference)."""

    def __init__(self, captioner, scorer, similarity=None):
        self.captioner, self.scorer, self.similarity = captioner, scorer, similarity

    def seeing_pixels(self) -> list:
        """The models that take pixels: the captioner, the filter, and a similarity model with its own vision
        tower (the filter's ITC head reuses the filter's vision states)."""
        models = [self.captioner, self.scorer]
        if self.similarity is not None and not self.similarity.reuses_vision_of(self.scorer):
            models.append(self.similarity)
        return models


def load_models(config: RunConfig, threads: int) -> LoadedModels:
    import torch

    from ...models.captioner import Captioner
    from ...models.itm import ItmScorer
    from ...models.similarity import load_similarity

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
    s = config.similarity
    similarity = None
    if s.enabled:
        options = dict(batch_size=s.batch_size, max_text_tokens=s.max_text_tokens)
        similarity = load_similarity(s.model, scorer, **runtime, **options)
    return LoadedModels(captioner, scorer, similarity)


def load_models_once(config: RunConfig, threads: int) -> LoadedModels:
    """``load_models`` with the collector paused (torch and transformers import inside), then its objects frozen.

    torch, transformers and Beam leave ~3500 modules of long-lived objects. Freezing them keeps the cyclic
    collector from rescanning them in every full collection, and cuts a worker process's exit (where the
    interpreter's final collections walked them all) from ~1.3 s to ~0.2 s; the local multi-process runner
    stops its workers one after another, so that was paid once per worker at the end of every run.
    """
    with collector.paused():
        models = load_models(config, threads)
        collector.settle()
    return models


class CleanShardFn(beam.DoFn):
    """Takes a shard path, writes its cleaned output, and emits its Stats.

    A shard whose stats file exists is skipped (its stored stats are emitted, after checking they were made
    with the same settings) unless ``overwrite``. Models load on the first shard that needs them, once per
    process, shared by its threads.

    Args:
        config: the validated run configuration.
        output_dir: where output shards go.
        overwrite: redo shards that are already complete.
        threads: torch intra-op threads per process (0 leaves torch's default).
        progress_dir: a local folder for progress counts (local runs only; see ``report.progress``).
    """

    def __init__(
        self,
        config: RunConfig,
        output_dir: str,
        overwrite: bool = False,
        threads: int = 0,
        progress_dir: str | None = None,
    ):
        self.config, self.output_dir, self.overwrite, self.threads = config, output_dir, overwrite, threads
        self.progress_dir = progress_dir
        self._shared = Shared()
        self._models = None
        self._counters = {}

    def setup(self):
        # A remote worker resolves dtype auto for its own device, so its shards record what it ran.
        self.config = self.config.resolved()

    def _counter(self, name: str):
        if name not in self._counters:
            self._counters[name] = Metrics.counter(NAMESPACE, name)
        return self._counters[name]

    def process(self, path: str):
        if not self.overwrite and shard_done(path, self.output_dir):
            self._counter("shards_skipped").inc()
            yield read_done_stats(path, self.output_dir, self.config)
            return
        raise_if_stopping()
        if self._models is None:
            c = self.config
            tag = repr((c.captioner, c.filter, c.similarity, c.runtime, self.threads))
            self._models = self._shared.acquire(lambda: load_models_once(self.config, self.threads), tag=tag)
        progress = WorkerProgress.for_folder(self.progress_dir) if self.progress_dir else None
        started = time.monotonic()
        threads = decode_threads(self.config.runtime.decode_threads, self._models.captioner.device, self.threads)
        stats = process_shard(
            path,
            self.output_dir,
            self.config,
            self._models,
            on_batch=progress.batch if progress else None,
            decode_threads=threads,
        )
        if progress:
            progress.shard(stats.input)
        self._record(stats)
        seconds = time.monotonic() - started
        failed = " FAILED: not a tar archive" if stats.failed_shards else ""
        LOG.info(f"shard {shard_name(path)}: {stats.input} samples, {stats.kept} kept, {seconds:.1f} s{failed}")
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

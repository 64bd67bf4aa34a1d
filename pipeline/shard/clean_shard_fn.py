"""The Beam DoFn of ``capfilt run``: cleans whole shards, with the models loaded once per worker process."""

from __future__ import annotations

import logging
import time

from apache_beam.utils.shared import Shared

from ..config import RunConfig
from ..cores import decode_threads
from ..report.progress import WorkerProgress
from ..shard_job import ShardFn
from ..stats import Stats
from .loaded_models import load_models_once
from .process import process_shard
from .reader import shard_name

LOG = logging.getLogger("capfilt.worker")  # a line per shard in a cluster's worker logs; quiet on local runs


class CleanShardFn(ShardFn):
    """Takes a shard path, writes its cleaned output, and emits its Stats (``ShardFn`` skips complete shards).
    Models load on the first shard that needs them, once per process, shared by its threads.

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
        super().__init__(config, output_dir, overwrite)
        self.threads, self.progress_dir = threads, progress_dir
        self._shared = Shared()
        self._models = None

    def setup(self):
        # A remote worker resolves dtype auto for its own device, so its shards record what it ran.
        self.config = self.config.resolved()

    def write_shard(self, path: str) -> Stats:
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
        seconds = time.monotonic() - started
        failed = " FAILED: not a tar archive" if stats.failed_shards else ""
        LOG.info(f"shard {shard_name(path)}: {stats.input} samples, {stats.kept} kept, {seconds:.1f} s{failed}")
        return stats

"""Where the samples of one output shard go, whichever job decided them: counted in the shard's stats, offered
to the report's examples, and written (tar, parquet, embeddings); nothing under a final name until ``commit``,
which writes ``NAME_stats.json`` last."""

from __future__ import annotations

import time

from ..config import VideoConfig
from ..policy import Decision
from ..stats import Stats
from .examples import ExamplePicker
from .sample import Sample
from .writer import ShardWriter

STATUSES = ("ok", "failed", "truncated")


class ShardSink:
    """One output shard being written. Use it as a context manager: leaving it by an exception discards the
    attempt (no file of it stays), so the runner can retry the shard.

    Args:
        output_dir: the job's output folder (any Beam filesystem).
        name: the shard's base name.
        policy: the selection policy, recorded in each kept sample's json.
        by: the score the policy ranked by (``itm`` or ``similarity``).
        embeddings: also write clip-retrieval's embedding files of the kept samples.
        max_pixels: the decode pixel limit, for the examples' thumbnails.
        video: how clips were sampled, for the examples' frame strips.
        settings: what the stats record of the settings that made the shard (``resume.recorded_settings``).
    """

    def __init__(
        self,
        output_dir: str,
        name: str,
        policy: str,
        by: str,
        embeddings: bool,
        max_pixels: int,
        video: VideoConfig,
        settings: dict,
    ):
        self.output_dir, self.name, self.settings = output_dir, name, settings
        self._writer_args = (output_dir, name, policy, by, embeddings)
        self._picker_args = (name, max_pixels, video)
        self._writer = ShardWriter(*self._writer_args)
        self._examples = ExamplePicker(*self._picker_args)
        self._started = time.monotonic()
        self.stats = Stats(shards=1)

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self._writer.discard()

    def add(self, sample: Sample) -> None:
        """Count, offer and write one sample whose status is final."""
        count_sample(self.stats, sample)
        self._examples.offer(sample)
        self._writer.write(sample)

    def commit(self, status: str = "ok", error: str = "") -> Stats:
        """Write the shard's files, stats last; ``status`` is ``ok``, ``failed`` (unreadable: its stats say
        ``error``) or ``truncated`` (read up to a cut: ``error`` says where). Returns the shard's stats."""
        if status not in STATUSES:
            raise ValueError(f"unknown shard status {status!r}")
        stats = self.stats
        if status == "failed":
            stats.failed_shards.append(self.name)
        elif status == "truncated":
            stats.truncated_shards.append(self.name)
        stats.examples = self._examples.examples
        stats.seconds = time.monotonic() - self._started
        stats.per_shard = {
            self.name: {"input": stats.input, "kept": stats.kept, "seconds": round(stats.seconds, 3), "status": status}
        }
        self._writer.commit(stats, shard=self.name, error=error, **self.settings)
        return stats

    def fail(self, error: str) -> Stats:
        """Commit the shard as unreadable: whatever was written is dropped for an empty tar and a parquet with no
        rows beside the stats, so every input shard has its three files and a trainer's shard list never names
        a tar that is not there."""
        self._writer.discard()
        self._writer = ShardWriter(*self._writer_args)
        self._examples = ExamplePicker(*self._picker_args)
        self.stats = Stats(shards=1)
        return self.commit("failed", error)


def count_sample(stats: Stats, sample: Sample) -> None:
    """Add one sample whose status is final to ``stats``, with its notes."""
    decision = sample.decision or Decision(None, reason=sample.status)
    source = decision.chosen.source if decision.chosen else None
    stats.add_sample(
        sample.status,
        source,
        sample.web_score,
        sample.synthetic_scores,
        sample.web_similarity,
        sample.synthetic_similarities,
    )
    for note in sample.notes:
        stats.add_error(note.split(":", 1)[0])

"""One input shard end to end: read → decode → caption → score → select → write, a batch at a time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

from .. import storage
from ..config import RunConfig
from ..policy import Decision
from ..report.examples import ExamplePicker
from ..stats import Stats
from .annotate import batch_seed, caption_batch, decide, score_batch
from .decode import decode_sample
from .prefetch import prefetch
from .reader import ShardFormatError, TarSamples, shard_name
from .sample import Sample
from .writer import ShardWriter, output_paths


def batched(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def shard_done(path: str, output_dir: str) -> bool:
    return storage.exists(output_paths(output_dir, shard_name(path))["stats"])


def read_stats(path: str, output_dir: str) -> Stats:
    return Stats.from_json(storage.read_bytes(output_paths(output_dir, shard_name(path))["stats"]))


def process_shard(path: str, output_dir: str, config: RunConfig, models) -> Stats:
    """Clean one shard and write its output files; returns its stats.

    A file that is not a tar archive gives a failed shard: only its stats file, saying why. Any other
    error propagates, leaving no output under a final name, so the runner can retry the shard.
    """
    name = shard_name(path)
    started = time.monotonic()
    stats = Stats(shards=1)
    writer = ShardWriter(output_dir, name, config.filter.policy)
    examples = ExamplePicker(name, config.decode.max_pixels)
    try:
        with storage.open_raw(path) as stream:
            reader = TarSamples(stream, config.decode.max_member_bytes)
            for batch in _annotated_batches(reader, name, config, models):
                for sample in batch:
                    _count(stats, sample)
                    examples.offer(sample)
                    writer.write(sample)
    except ShardFormatError as exc:
        writer.discard()
        stats.failed_shards.append(name)
        stats.seconds = time.monotonic() - started
        storage.write_bytes(writer.paths["stats"], stats.to_json(shard=name, error=str(exc)), output_dir)
        return stats
    except BaseException:
        writer.discard()
        raise
    if reader.truncation:
        stats.truncated_shards.append(name)
    stats.examples = examples.examples
    stats.seconds = time.monotonic() - started
    writer.commit(stats, shard=name, error=reader.truncation)
    return stats


def _annotated_batches(samples: Iterable[Sample], name: str, config: RunConfig, models) -> Iterator[list[Sample]]:
    decoded = (decode_sample(s, config.decode) for s in samples)
    batches = prefetch(batched(decoded, config.captioner.batch_size), config.runtime.prefetch_batches)
    for index, batch in enumerate(batches):
        caption_batch(batch, models.captioner, batch_seed(config.seed, name, index))
        score_batch(batch, models.scorer)
        for sample in batch:
            decide(sample, config.filter.policy, config.filter.threshold, config.filter.web_margin)
        yield batch


def _count(stats: Stats, sample: Sample) -> None:
    decision = sample.decision or Decision(None, reason=sample.status)
    source = decision.chosen.source if decision.chosen else None
    stats.add_sample(sample.status, source, sample.web_score, sample.synthetic_scores)
    for note in sample.notes:
        stats.add_error(note.split(":", 1)[0])

"""One input shard end to end: read → decode → caption → score → select → write, a batch at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .. import interrupt, storage
from ..config import RunConfig, settings_difference
from ..policy import Decision
from ..report.examples import ExamplePicker
from ..stats import Stats
from .annotate import batch_seed, caption_batch, decide, score_batch
from .decode import decode_sample
from .pixels import SharedPixels
from .prefetch import ordered_map, prefetch
from .reader import ShardFormatError, TarSamples, shard_name
from .sample import Sample
from .writer import ShardWriter, output_paths


def batched(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """Batches of samples holding ``size`` pictures, a video counting its sampled frames (an image, or a dropped
    sample, one), so a batch of clips weighs on memory and the models as a batch of images does."""
    batch, weight = [], 0
    for sample in items:
        batch.append(sample)
        weight += len(sample.frames) or 1
        if weight >= size:
            yield batch
            batch, weight = [], 0
    if batch:
        yield batch


def shard_done(path: str, output_dir: str) -> bool:
    return storage.exists(output_paths(output_dir, shard_name(path))["stats"])


def read_done_stats(path: str, output_dir: str, config: RunConfig) -> Stats:
    """The stats of a complete shard; raises SettingsMismatch when it was made with other settings than
    ``config``'s, so one output folder never mixes two runs' decisions."""
    data = storage.read_bytes(output_paths(output_dir, shard_name(path))["stats"])
    document = json.loads(data)
    if document.get("fingerprint") != config.fingerprint():
        raise SettingsMismatch(shard_name(path), document.get("settings"), config.output_settings())
    return Stats.from_json(data)


class SettingsMismatch(ValueError):
    def __init__(self, shard: str, recorded: dict | None, current: dict):
        changes = settings_difference(recorded, current) if recorded else ["no settings recorded"]
        super().__init__(
            f"shard {shard} was made with other settings ({'; '.join(changes[:3])}); pass --overwrite to redo "
            "every shard, or write to another --output"
        )


def process_shard(
    path: str,
    output_dir: str,
    config: RunConfig,
    models,
    on_batch: Callable[[int, int], None] | None = None,
    decode_threads: int = 1,
) -> Stats:
    """Clean one shard and write its output files; returns its stats. ``on_batch(samples, kept)`` hears of
    every batch written, for progress inside a shard; ``decode_threads`` decode pictures and make their pixels.

    A file that is not a tar archive gives a failed shard: an empty tar, a parquet with no rows, and stats
    saying why. Any other
    error propagates, leaving no output under a final name, so the runner can retry the shard.
    """
    name = shard_name(path)
    started = time.monotonic()
    stats = Stats(shards=1)
    writer = _writer(output_dir, name, config)
    examples = ExamplePicker(name, config.decode.max_pixels, config.video)
    try:
        with storage.open_raw(path) as stream:
            reader = TarSamples(stream, config.decode.max_member_bytes, config.video.max_member_bytes)
            for batch in _annotated_batches(reader, name, config, models, decode_threads):
                for sample in batch:
                    count_sample(stats, sample)
                    examples.offer(sample)
                    writer.write(sample)
                if on_batch is not None:
                    on_batch(len(batch), sum(s.status == "kept" for s in batch))
                interrupt.raise_if_stopping()
    except ShardFormatError as exc:
        # An empty tar and a parquet with no rows beside the stats, so every input shard has its three files
        # and a trainer's shard list never names a tar that is not there.
        writer.discard()
        writer = _writer(output_dir, name, config)
        stats.failed_shards.append(name)
        finish_stats(stats, name, "failed", started)
        writer.commit(stats, shard=name, error=str(exc), **_settings(config))
        return stats
    except BaseException:
        writer.discard()
        raise
    if reader.truncation:
        stats.truncated_shards.append(name)
    stats.examples = examples.examples
    finish_stats(stats, name, "truncated" if reader.truncation else "ok", started)
    writer.commit(stats, shard=name, error=reader.truncation, **_settings(config))
    return stats


def _writer(output_dir: str, name: str, config: RunConfig) -> ShardWriter:
    return ShardWriter(output_dir, name, config.filter.policy, config.filter.score, config.similarity.embeddings)


def finish_stats(stats: Stats, name: str, status: str, started: float) -> None:
    """Set the shard's seconds and its row of ``per_shard`` (``status``: ok, failed or truncated)."""
    stats.seconds = time.monotonic() - started
    stats.per_shard = {
        name: {"input": stats.input, "kept": stats.kept, "seconds": round(stats.seconds, 3), "status": status}
    }


def _settings(config: RunConfig) -> dict:
    """What a shard's stats record of the settings that made it, for a resumed run to compare."""
    return {"fingerprint": config.fingerprint(), "settings": config.output_settings()}


def prepared_batches(
    samples: Iterable[Sample], config: RunConfig, pixels: SharedPixels, pool=None, threads: int = 1
) -> Iterator[list[Sample]]:
    """Batches of decoded samples, the live ones carrying their pixels: what runs ahead of the models. Decoding
    and pixels run on ``pool`` (``threads`` of them) when it is given; reading stays in order in this thread."""

    def decode(sample: Sample) -> Sample:
        return decode_sample(sample, config.decode, config.video)

    decoded = ordered_map(decode, samples, pool, ahead=2 * threads)
    return pixels.attached(batched(decoded, config.captioner.batch_size))


def _annotated_batches(
    samples: Iterable[Sample], name: str, config: RunConfig, models, decode_threads: int = 1
) -> Iterator[list[Sample]]:
    pool = ThreadPoolExecutor(decode_threads, "capfilt-decode") if decode_threads > 1 else None
    try:
        pixels = SharedPixels(models.seeing_pixels(), pool, decode_threads)
        ready = prepared_batches(samples, config, pixels, pool, decode_threads)
        for index, batch in enumerate(prefetch(ready, config.runtime.prefetch_batches)):
            seed = batch_seed(config.seed, name, index)
            caption_batch(batch, models.captioner, seed, config.video.caption_frames, pixels)
            interrupt.raise_if_stopping()  # between the model stages too: a batch of a large model takes a while
            score_batch(batch, models.scorer, models.similarity, config.similarity.embeddings, pixels)
            f = config.filter
            for sample in batch:
                decide(sample, f.policy, f.threshold, f.web_margin, f.score)
            yield batch
    finally:
        if pool is not None:  # a stopped shard does not wait for decoding nobody will read
            pool.shutdown(wait=False, cancel_futures=True)


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

"""One input shard end to end: read → decode → caption → score → select → write, a batch at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .. import interrupt, storage
from ..config import RunConfig
from ..policy import decide
from ..resume import recorded_settings
from ..stats import Stats
from .annotate import batch_seed, caption_after_web_scores, caption_batch, score_batch
from .batches import prepared_batches
from .pixels import SharedPixels
from .prefetch import prefetch
from .reader import ShardFormatError, TarSamples, shard_name
from .sample import Sample
from .sink import ShardSink


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

    A file that is not a tar archive gives a failed shard (``ShardSink.fail``). Any other error propagates,
    leaving no output under a final name, so the runner can retry the shard.
    """
    name = shard_name(path)
    with run_sink(output_dir, name, config) as sink:
        try:
            with storage.open_raw(path) as stream:
                reader = TarSamples(stream, config.decode.max_member_bytes, config.video.max_member_bytes)
                for batch in _annotated_batches(reader, name, config, models, decode_threads):
                    for sample in batch:
                        sink.add(sample)
                    if on_batch is not None:
                        on_batch(len(batch), sum(s.status == "kept" for s in batch))
                    interrupt.raise_if_stopping()
        except ShardFormatError as exc:
            return sink.fail(str(exc))
        return sink.commit("truncated" if reader.truncation else "ok", reader.truncation)


def run_sink(output_dir: str, name: str, config: RunConfig) -> ShardSink:
    f = config.filter
    return ShardSink(
        output_dir,
        name,
        f.policy,
        f.score,
        config.similarity.embeddings,
        config.decode.max_pixels,
        config.video,
        recorded_settings(config),
    )


def _annotated_batches(
    samples: Iterable[Sample], name: str, config: RunConfig, models, decode_threads: int = 1
) -> Iterator[list[Sample]]:
    pool = ThreadPoolExecutor(decode_threads, "capfilt-decode") if decode_threads > 1 else None
    try:
        pixels = SharedPixels(models.seeing_pixels(), pool, decode_threads)
        ready = prepared_batches(samples, config, pixels, pool, decode_threads)
        for index, batch in enumerate(prefetch(ready, config.runtime.prefetch_batches)):
            seed, frames = batch_seed(config.seed, name, index), config.video.caption_frames
            below, states = config.captioner.caption_below, None
            if below is None:
                caption_batch(batch, models.captioner, seed, frames, pixels)
            else:
                states = caption_after_web_scores(batch, models.captioner, models.scorer, below, seed, frames, pixels)
            interrupt.raise_if_stopping()  # between the model stages too: a batch of a large model takes a while
            score_batch(batch, models.scorer, models.similarity, config.similarity.embeddings, pixels, states)
            f = config.filter
            for sample in batch:
                decide(sample, f.policy, f.threshold, f.web_margin, f.score)
            yield batch
    finally:
        if pool is not None:  # a stopped shard does not wait for decoding nobody will read
            pool.shutdown(wait=False, cancel_futures=True)

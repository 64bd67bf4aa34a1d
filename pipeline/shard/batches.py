"""Batches of samples for the models: pictures counted towards the batch size, decoded and given their model
pixels ahead of the model thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..config import RunConfig
from .decode import decode_sample
from .pixels import SharedPixels
from .prefetch import ordered_map
from .sample import Sample


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


def prepared_batches(
    samples: Iterable[Sample], config: RunConfig, pixels: SharedPixels, pool=None, threads: int = 1
) -> Iterator[list[Sample]]:
    """Batches of decoded samples, the live ones carrying their pixels: what runs ahead of the models. Decoding
    and pixels run on ``pool`` (``threads`` of them) when it is given; reading stays in order in this thread."""

    def decode(sample: Sample) -> Sample:
        return decode_sample(sample, config.decode, config.video)

    decoded = ordered_map(decode, samples, pool, ahead=2 * threads)
    return pixels.attached(batched(decoded, config.captioner.batch_size))

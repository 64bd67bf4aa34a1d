"""The models' pixels of every live picture, made ahead of the models (in the prefetch thread, or on its decode
pool) once per distinct image processor.

Without this each model call resizes and normalises its own pictures in the model thread: twice per picture
with BLIP's captioner and filter (7.6 ms each for a photo at BLIP-base's 384 px here), which a GPU spends
waiting. Models whose processors make the same pixels (``models.pixels.processor_key``) share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Executor

from ...models.pixels import image_pixels, joined, processor_key, stacked
from .sample import Sample

# Pictures per image-processor call. The processor copies every picture into an array first (64 photos: ~40 MiB);
# whole batches at once, beside the models' activations, took the demo run's peak RSS to 1.03 GiB, parts of 16 to
# 0.93 GiB (0.69 GiB without prefetch; BENCHMARKS.md, memory).
PART = 16


class SharedPixels:
    """Pixels for ``models`` (wrappers with ``image_processor`` and ``model``), each picture's made once per
    distinct processor. ``attached`` runs in the prefetch thread, ``of`` in the model thread."""

    def __init__(self, models: list, pool: Executor | None = None, threads: int = 1):
        self._pool, self._threads = pool, threads
        self._key_of = {id(model): processor_key(model.image_processor) for model in models}
        self._makers: dict[str, object] = {}
        for model in models:
            self._makers.setdefault(self._key_of[id(model)], model)

    @property
    def processors(self) -> int:
        """How many distinct preprocessings a picture goes through."""
        return len(self._makers)

    def attached(self, batches: Iterable[list[Sample]]) -> Iterator[list[Sample]]:
        for batch in batches:
            self.attach(batch)
            yield batch

    def attach(self, batch: list[Sample]) -> None:
        """Give each live sample of ``batch`` its pictures' pixels for every processor, in the models' dtype
        (bfloat16 pixels take half the memory while the batch waits)."""
        live = [s for s in batch if s.live]
        pictures = [picture for sample in live for picture in sample.pictures]
        if not pictures:
            return
        for key, maker in self._makers.items():
            values = self._pixels(maker, pictures)
            start = 0
            for sample in live:
                count = len(sample.pictures)
                sample.pixels[key] = values[start : start + count]
                start += count

    def _pixels(self, maker, pictures: list):
        """``maker``'s pixels of ``pictures`` in its dtype, a part of at most ``PART`` pictures per processor call
        (spread over the pool when there is one). Each picture's pixels depend on it alone, so the parts join into
        what one call would make, while the processor's temporary arrays stay a part's size."""
        size = max(1, min(PART, -(-len(pictures) // self._threads)))
        parts = [pictures[start : start + size] for start in range(0, len(pictures), size)]

        def make(part: list):
            return image_pixels(maker.image_processor, part).to(maker.model.dtype)

        made = self._pool.map(make, parts) if self._pool is not None and len(parts) > 1 else map(make, parts)
        return joined(list(made))

    def of(self, model, pictures: list[tuple[Sample, int]]):
        """``model``'s pixels of the given (sample, frame) pictures, stacked in order; None when a sample has
        none (it was not attached), so the model makes them itself."""
        key = self._key_of.get(id(model))
        rows = [sample.pixels.get(key) for sample, _ in pictures]
        if key is None or not rows or any(row is None for row in rows):
            return None
        return stacked([row[frame] for row, (_, frame) in zip(rows, pictures, strict=True)])

"""Running a generator a few items ahead in a background thread, so reading and decoding a shard overlap
with model compute (which releases the GIL)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


def prefetch(items: Iterable, depth: int) -> Iterator:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a daemon thread; ``depth`` 0 is a plain
    pass-through. An exception in the producer is raised here, at the item where it happened."""
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put((_DONE, exc))

    thread = threading.Thread(target=produce, name="capfilt-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

"""Running a generator a few items ahead in a background thread, so reading and decoding a shard overlap
with model compute (which releases the GIL); and mapping over items on a pool of threads, in order."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor

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


def ordered_map(function: Callable, items: Iterable, pool: Executor | None, ahead: int) -> Iterator:
    """``map(function, items)`` in order, with up to ``ahead`` calls running at once on ``pool`` (None: one at
    a time in this thread). An exception is raised at the item whose call raised it."""
    if pool is None:
        yield from map(function, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from capfilt.pipeline.shard.prefetch import ordered_map, prefetch


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_order_is_kept(depth):
    assert list(prefetch(iter(range(50)), depth)) == list(range(50))


def test_producer_runs_in_another_thread_at_most_depth_items_ahead_of_the_consumer(monkeypatch):
    depth = 3
    change = threading.Condition()  # notified at every pull, get and put, so a wait sees each step
    asked = [0]  # items the consumer has asked for (counted before it asks, so never behind the producer's view)
    pulled = []  # (item, items asked for when the producer pulled it, thread)
    queues, done = [], []

    class WatchedQueue(queue.Queue):
        def __init__(self, maxsize=0):
            super().__init__(maxsize)
            self.gets = 0
            queues.append(self)

        def put(self, item, block=True, timeout=None):
            with change:
                change.notify_all()
            return super().put(item, block, timeout)

        def get(self, block=True, timeout=None):
            item = super().get(block, timeout)
            with change:
                self.gets += 1
                change.notify_all()
            return item

    def waiting_for_room() -> bool:
        """The producer holds an item it pulled and cannot put (or has nothing left): it can pull no more."""
        q = queues[0] if queues else None
        return bool(done) or (q is not None and q.full() and len(pulled) == q.gets + q.qsize() + 1)

    monkeypatch.setattr(queue, "Queue", WatchedQueue)

    def items():
        for i in range(20):
            with change:
                pulled.append((i, asked[0], threading.current_thread().name))
                change.notify_all()
            yield i
        with change:
            done.append(True)
            change.notify_all()

    stream = prefetch(items(), depth)

    def take():
        with change:
            asked[0] += 1
        return next(stream)

    assert take() == 0
    with change:
        # While the consumer holds item 0 the producer fills the queue (items 1-3) and pulls one more, which it
        # holds until there is room: five pulled.
        assert change.wait_for(waiting_for_room, timeout=60)
        assert len(pulled) == depth + 2
    assert [take() for _ in range(19)] == list(range(1, 20))
    # Each item is pulled only once the consumer has asked for all but the last `depth` before it.
    assert [i for i, asked_then, _ in pulled if i > asked_then + depth] == []
    assert {thread for _, _, thread in pulled} == {"capfilt-prefetch"}


def test_producer_error_is_raised_at_its_place():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(items(), 2):
            seen.append(item)
    assert seen == [1, 2]


def test_consumer_stopping_early_stops_the_producer():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    stream = prefetch(endless(), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "capfilt-prefetch"]


def test_ordered_map_keeps_order_raises_in_place_and_bounds_the_calls_in_flight():
    pool = ThreadPoolExecutor(4)
    started, running, most = [], [0], [0]
    lock = threading.Lock()

    def slow_square(x):
        with lock:
            started.append(x)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (x % 3))  # later items often finish first
        with lock:
            running[0] -= 1
        if x == 13:
            raise ValueError("bad item 13")
        return x * x

    seen = []
    with pytest.raises(ValueError, match="bad item 13"):
        for value in ordered_map(slow_square, iter(range(40)), pool, ahead=3):
            seen.append(value)
    assert seen == [x * x for x in range(13)]
    assert most[0] <= 3 and max(started) < 13 + 3  # never more than `ahead` items past the one awaited
    assert list(ordered_map(slow_square, range(5), None, ahead=3)) == [0, 1, 4, 9, 16]
    pool.shutdown()

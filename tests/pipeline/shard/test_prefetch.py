import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from capfilt.pipeline.shard.prefetch import ordered_map, prefetch


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_order_is_kept(depth):
    assert list(prefetch(iter(range(50)), depth)) == list(range(50))


def test_producer_runs_in_another_thread_ahead_of_the_consumer():
    produced_in = []

    def items():
        for i in range(20):
            produced_in.append(threading.current_thread().name)
            yield i

    stream = prefetch(items(), 3)
    assert next(stream) == 0
    # While the consumer holds item 0, the producer fills the queue (depth 3) and blocks holding one more.
    deadline = time.monotonic() + 10
    while len(produced_in) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # room to overrun the bound, were there no bound
    assert len(produced_in) == 5
    assert list(stream) == list(range(1, 20))
    assert set(produced_in) == {"capfilt-prefetch"}


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

import threading
import time

import pytest

from capfilt.pipeline.shard.prefetch import prefetch


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

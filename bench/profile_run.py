"""``capfilt run`` with a stopwatch on each step of its critical path, for comparing with the floor's phases.

    python -m bench.profile_run OUT.json run demo --input ... --output ... [--set ...]

Runs the real command in this process (local runner, in-memory worker) with timers wrapped around the
functions that mark each step, and writes wall and CPU seconds per phase to ``OUT.json``. Phases follow one another
on the critical path, so they add up to the time from the start of this module to the command's return;
``decode (prefetch thread)`` is the exception: it overlaps the model phases, and only what the model thread
waits for it appears on the critical path (``read and decode``).
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import functools  # noqa: E402  (the clock starts before anything else is imported)
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402


class Clock:
    """Wall and CPU seconds (the whole process's) per phase; ``lap(name)`` ends the phase that has run since the
    last lap. CPU seconds move far less than wall time when other processes share the machine."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._last = (STARTED, 0.0)
        self._lock = threading.Lock()

    def lap(self, name: str) -> None:
        with self._lock:
            now = (time.monotonic(), time.process_time())
            self.seconds[name] += now[0] - self._last[0]
            self.cpu[name] += now[1] - self._last[1]
            self._last = now

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds


CLOCK = Clock()


def around(owner, attr: str, before: str, during: str, prelude=None) -> None:
    """Replace ``owner.attr`` so the time up to its call counts as ``before`` and the call as ``during``;
    ``prelude``, a (phase, function) pair, runs first as a phase of its own."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        CLOCK.lap(before)
        if prelude:
            prelude[1]()
            CLOCK.lap(prelude[0])
        try:
            return original(*args, **kwargs)
        finally:
            CLOCK.lap(during)

    setattr(owner, attr, timed)


def counted(owner, attr: str, name: str) -> None:
    """Add the time of every call of ``owner.attr`` to ``name`` without ending a phase (off the critical path)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            CLOCK.add(name, time.monotonic() - started)

    setattr(owner, attr, timed)


def import_model_libraries() -> None:
    """What ``load_models`` imports first, so that it is timed apart from reading the weights."""
    import torch  # noqa: F401
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval  # noqa: F401


def instrument() -> None:
    from capfilt.pipeline import beam_job, launch
    from capfilt.pipeline.shard import batches, clean_shard_fn, loaded_models, process, writer

    around(launch, "_run_job", "CLI, config, preflight", "Beam finish")
    around(beam_job, "build", "Beam start", "Beam start")
    around(loaded_models, "load_models", "Beam start", "model load", ("model imports", import_model_libraries))
    around(process, "caption_batch", "shard other", "caption")
    around(process, "score_batch", "shard other", "itm")
    around(writer.ShardWriter, "write", "shard other", "write output")
    around(writer.ShardWriter, "commit", "shard other", "write output")
    around(beam_job, "write_report", "Beam between shards and report", "report")
    around(launch, "_summarise", "Beam finish", "summary")
    counted(batches, "decode_sample", "decode (prefetch thread)")
    original_prefetch = process.prefetch

    def waited(items, depth):
        iterator = iter(original_prefetch(items, depth))
        while True:
            CLOCK.lap("shard other")
            try:
                item = next(iterator)
            except StopIteration:
                CLOCK.lap("read and decode")
                return
            CLOCK.lap("read and decode")
            yield item

    process.prefetch = waited
    around(clean_shard_fn, "process_shard", "Beam between shards", "shard other")


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from capfilt.cli import main as capfilt_main

    CLOCK.lap("imports (capfilt CLI)")
    instrument()
    code = capfilt_main(argv)
    CLOCK.lap("summary")
    seconds = {k: round(v, 3) for k, v in CLOCK.seconds.items()}
    cpu = {k: round(v, 3) for k, v in CLOCK.cpu.items()}
    total = round(time.monotonic() - STARTED, 3)
    with open(out, "w") as handle:
        json.dump({"code": code, "seconds": seconds, "cpu": cpu, "total": total}, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())

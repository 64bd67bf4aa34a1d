"""A line per finished shard with a running total and an ETA, for people watching a local run."""

from __future__ import annotations

import threading
import time

from ..stats import Stats


class Progress:
    """Running totals of the shards one worker process has finished.

    On a single-process local run that is the whole run, so the ETA is the run's; with several worker
    processes each reports its own share (cluster runs have Beam's metrics for the whole).

    Args:
        total_shards: shards in the run, skipped ones included.
    """

    _by_run: dict[str, Progress] = {}
    _lock = threading.Lock()

    def __init__(self, total_shards: int):
        self.total = total_shards
        self.done = self.samples = self.kept = 0
        self.started = time.monotonic()

    @classmethod
    def for_run(cls, run_id: str, total_shards: int) -> Progress:
        with cls._lock:
            return cls._by_run.setdefault(run_id, cls(total_shards))

    def skipped(self) -> None:
        with self._lock:
            self.total -= 1

    def finished(self, name: str, stats: Stats, seconds: float) -> str:
        with self._lock:
            self.done += 1
            self.samples += stats.input
            self.kept += stats.kept
            elapsed = time.monotonic() - self.started
            remaining = max(self.total - self.done, 0) * elapsed / self.done
        status = " FAILED: not a tar archive" if stats.failed_shards else ""
        return (
            f"shard {name}: {stats.input} samples, {stats.kept} kept, {stats.input / max(seconds, 1e-9):.1f}"
            f" samples/s{status} | {self.done}/{self.total} shards, {self.samples} samples, {self.kept} kept,"
            f" ETA {_clock(remaining)}"
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

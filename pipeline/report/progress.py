"""Progress of a local run, inside shards and summed over worker processes.

Each worker process keeps its running counts in a small JSON file of its own in a folder the launcher made
(rewritten by rename after every batch); the launcher sums the files and prints a line now and then. Files,
not Beam metrics, because a local runner reports metrics only when the run ends. Cluster runs have their
runner's own monitoring and get no folder.
"""

from __future__ import annotations

import json
import os
import threading
import time

PRINT_EVERY_S = 10.0  # a line at least this often while samples advance, and at every finished shard
READ_EVERY_S = 1.0


class WorkerProgress:
    """The counts of one worker process, shared by its threads, written to ``folder/PID.json``."""

    _by_folder: dict[str, WorkerProgress] = {}
    _lock = threading.Lock()

    def __init__(self, folder: str):
        self.path = os.path.join(folder, f"{os.getpid()}.json")
        self.counts = {"shards": 0, "samples": 0, "kept": 0, "samples_in_done_shards": 0}

    @classmethod
    def for_folder(cls, folder: str) -> WorkerProgress:
        with cls._lock:
            return cls._by_folder.setdefault(folder, cls(folder))

    def batch(self, samples: int, kept: int) -> None:
        with self._lock:
            self.counts["samples"] += samples
            self.counts["kept"] += kept
            self._write()

    def shard(self, samples: int) -> None:
        with self._lock:
            self.counts["shards"] += 1
            self.counts["samples_in_done_shards"] += samples
            self._write()

    def _write(self) -> None:
        temp = f"{self.path}.tmp"
        with open(temp, "w") as handle:
            json.dump(self.counts, handle)
        os.replace(temp, self.path)


def read_counts(folder: str) -> dict[str, int]:
    """The counts of every worker process in ``folder``, summed."""
    total = {"shards": 0, "samples": 0, "kept": 0, "samples_in_done_shards": 0}
    for name in os.listdir(folder):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as handle:
                counts = json.load(handle)
        except (OSError, ValueError):  # replaced while read; the next read has it
            continue
        for key in total:
            total[key] += counts.get(key, 0)
    return total


class ProgressPrinter:
    """Prints ``shards done/to do, samples, kept, samples/s, ETA`` from the workers' files.

    Args:
        folder: the workers' progress folder.
        to_do: shards this run processes (complete ones it skips excluded).
        say: prints one line.
    """

    def __init__(self, folder: str, to_do: int, say):
        self.folder, self.to_do, self.say = folder, to_do, say
        self.started = self.last_read = self.last_print = time.monotonic()
        self.shown = {"shards": 0, "samples": 0}

    def tick(self, final: bool = False) -> None:
        """Print a line when a shard finished or, now and then, when samples advanced; ``final``: read now and
        print whatever was not shown yet (the run ended)."""
        now = time.monotonic()
        if now - self.last_read < READ_EVERY_S and not final:
            return
        self.last_read = now
        counts = read_counts(self.folder)
        shard_done = counts["shards"] > self.shown["shards"]
        advanced = counts["samples"] > self.shown["samples"]
        if shard_done or (advanced and (final or now - self.last_print >= PRINT_EVERY_S)):
            self.say(self.line(counts, now - self.started))
            self.shown = {"shards": counts["shards"], "samples": counts["samples"]}
            self.last_print = now

    def line(self, counts: dict[str, int], elapsed: float) -> str:
        rate = counts["samples"] / elapsed if elapsed > 0 else 0.0
        eta = "?"
        if counts["shards"] and rate > 0:  # samples per shard as seen so far, times the shards left
            expected = counts["samples_in_done_shards"] / counts["shards"] * self.to_do
            eta = _clock(max(expected - counts["samples"], 0) / rate)
        return (
            f"capfilt: {counts['shards']}/{self.to_do} shards, {counts['samples']} samples, {counts['kept']} kept,"
            f" {rate:.1f} samples/s, ETA {eta}"
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

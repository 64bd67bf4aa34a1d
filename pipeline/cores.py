"""How many threads each kind of work gets from the cores a worker process may use."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (set by ``taskset``, cpusets and container runtimes),
    which ``os.cpu_count()`` ignores."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def decode_threads(configured: int, device: str, process_cores: int = 0) -> int:
    """Threads that decode pictures and make their pixels ahead of the models: ``configured`` when set; on a GPU
    every core the process has (``process_cores``, else all usable), since one core decoding and resizing
    photos falls behind what a GPU captions and scores; on a CPU one, as the models already use every core."""
    if configured:
        return configured
    return (process_cores or usable_cores()) if device.startswith("cuda") else 1

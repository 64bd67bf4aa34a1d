"""The model thread's allocations: on glibc every thread started after a run begins shares the main arena."""

import os
import platform
import subprocess
import sys

import pytest

THREADS = 4

# Starts THREADS threads that all allocate while alive together (glibc gives a thread its arena at its first
# malloc, and reuses an arena only once its thread has ended), then prints every arena's use (malloc_stats,
# one "Arena N:" block each, on stderr).
ARENAS = f"""
import ctypes, sys, threading
if sys.argv[1] == "share":
    from capfilt.pipeline.allocator import share_main_arena
    assert share_main_arena() is True
together = threading.Barrier({THREADS})

def work():
    held = [bytearray(4096) for _ in range(64)]
    together.wait()
    del held

threads = [threading.Thread(target=work) for _ in range({THREADS})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    command = [sys.executable, "-c", ARENAS, mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas only")
def test_threads_started_after_the_call_allocate_from_the_main_arena():
    assert arenas("control") == 1 + THREADS  # without it each new thread gets an arena of its own
    assert arenas("share") == 1

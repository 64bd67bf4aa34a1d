"""glibc's malloc arenas, for the thread that runs the models.

A local run does its model work in a thread of its own (the main thread waits for signals), and glibc gives each
new thread a malloc arena of its own. That arena's heaps are handed back to the kernel as torch frees a batch's
large activations and faulted in again for the next batch. On this project's 2-core machine the floor's BLIP-base
work (32 images, bfloat16, 1 torch thread) made 5.2 M page faults and 8.2 s of system time from a second thread
against 1.4 M and 2.8 s from the main thread: 13% more CPU for the same work. With one arena every thread
allocates as the main thread does (1.9 M faults, 3.8 s).
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def share_main_arena() -> bool:
    """Make threads that start from now on allocate from glibc's main arena; False where the C library has no
    ``mallopt`` (macOS) or refuses it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, 1))

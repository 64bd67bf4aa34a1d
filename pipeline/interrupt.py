"""Stopping a run cleanly on SIGINT (Ctrl-C) and SIGTERM (what orchestrators send).

The run goes on in a thread of its own while the main thread waits, so a signal always finds the main thread
ready to act. On one it sets ``STOP`` (shard loops in this process raise ``Interrupted`` at their next batch,
discarding their temporary files), kills the local worker processes (they ignore both signals, see
``worker_main``, so a terminal's Ctrl-C, which reaches the whole process group, is handled once, here) and
returns: no output file is half-written, because every file appears only by rename, and a rerun resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells report it
STOP = threading.Event()
JOIN_TIMEOUT_S = 60.0  # longest wait for a batch in progress in this process to end


class Interrupted(BaseException):
    """Raised in a shard loop once a stop was asked for (a BaseException, so ``except Exception`` in a
    runner's retry logic does not swallow it)."""


def raise_if_stopping() -> None:
    if STOP.is_set():
        raise Interrupted()


def run_stoppable(work: Callable[[], None], tick: Callable[[], None] = lambda: None) -> int | None:
    """Run ``work`` until it ends or a signal arrives, calling ``tick`` in the main thread a few times a second
    meanwhile. Returns None when it ended (its exception re-raised), or the signal number that stopped it. A
    signal ignored when the process started (a background job's SIGINT) stays ignored."""
    STOP.clear()
    outcome: dict[str, BaseException] = {}
    # An Event, not Thread.join: a join interrupted by the signal handler's exception can report the thread
    # finished while it still runs (CPython), and the interpreter would then exit under it.
    ended = threading.Event()

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the main thread, which decides
            outcome["error"] = exc
        finally:
            ended.set()

    received: list[int] = []

    def on_signal(signum, frame) -> None:
        if received:  # a second signal while stopping: leave at once
            os._exit(EXIT_CODES[signum])
        received.append(signum)
        raise Interrupted()

    handled = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, on_signal) for s in handled}
    worker = threading.Thread(target=target, name="capfilt-run", daemon=True)
    worker.start()
    try:
        while not ended.wait(0.2):
            tick()
    except Interrupted:
        STOP.set()
        _mute()
        kill_worker_processes()
        ended.wait(JOIN_TIMEOUT_S)
        return received[0]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if "error" in outcome:
        raise outcome["error"]
    return None


def _mute() -> None:
    """The runner's threads report the workers' end as errors, each with a traceback; after a stop that is
    expected, and the one line the caller prints says what happened."""
    threading.excepthook = lambda args: None
    logging.getLogger().setLevel(logging.CRITICAL + 1)


def ignore_signals() -> None:
    """In a local worker process: leave SIGINT and SIGTERM to the launcher, which stops the run."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def kill_worker_processes() -> None:
    """SIGKILL every process descended from this one (they ignore the gentler signals; their temporary files
    are removed by the caller). Linux only: elsewhere the runner's own shutdown stops them once their current
    shard is done."""
    if not sys.platform.startswith("linux"):
        return
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    pending, descendants = [os.getpid()], []
    while pending:
        for child in children.get(pending.pop(), []):
            descendants.append(child)
            pending.append(child)
    for pid in descendants:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 10.0
    while any(map(_running, descendants)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False

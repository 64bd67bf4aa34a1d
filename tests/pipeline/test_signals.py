"""Ctrl-C and SIGTERM stop a run cleanly: one line, exit 130/143, no temporary file left, nothing half-written under a
final name, no worker process left behind, and the rerun ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from capfilt.pipeline.storage import TEMP_DIR
from tests.helpers import assert_complete, outputs, run, run_argv, sample_members, write_shard

SHARDS = 12
TWO_WORKERS = ["--", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.fixture(scope="module")
def corpus(tiny_models, tmp_path_factory):
    """Enough shards that a run is still going when the first one completes, and an uninterrupted run of them."""
    root = tmp_path_factory.mktemp("signals")
    for shard in range(SHARDS):
        members = [m for i in range(24) for m in sample_members(f"s{shard}_{i:03d}", f"a red square {i}")]
        write_shard(root / "in" / f"{shard:05d}.tar", members)
    assert run(tiny_models, root / "in", root / "reference") == 0
    return root


def start(argv: list[str]) -> subprocess.Popen:
    # A terminal's foreground job has SIGINT at its default; a test runner's child may inherit it ignored.
    return subprocess.Popen(
        [sys.executable, "-m", "capfilt", *argv],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a "terminal" Ctrl-C reaches exactly its processes
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def descendants(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            alive = fields[0] not in (b"Z", b"X")  # a zombie is dead, waiting for init to reap it
            if alive and (int(fields[1]) == pid or int(fields[3]) == pid):  # parent, or process group
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_cleanly_and_the_rerun_is_identical(
    tiny_models, corpus, tmp_path, workers, signum, code
):
    out = tmp_path / "out"
    argv = run_argv(tiny_models, str(corpus / "in" / "*.tar"), out) + (TWO_WORKERS if workers == 2 else [])
    process = start(argv)
    deadline = time.monotonic() + 120
    while not list(out.glob("*_stats.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole foreground process group
    else:
        process.send_signal(signum)  # an orchestrator signals the process it started
    stopped = time.monotonic()
    err = process.communicate(timeout=60)[1]
    assert process.returncode == code
    assert time.monotonic() - stopped < 20, "stops within a batch, not after the run"
    lines = err.strip().splitlines()
    assert all(line.startswith("capfilt: ") for line in lines), err[-3000:]
    complete = len(list(out.glob("*_stats.json")))
    assert lines[-1] == f"capfilt: interrupted: {complete}/{SHARDS} shards complete; rerun to resume"
    assert 1 <= complete < SHARDS
    assert not (out / TEMP_DIR).exists()
    assert not (out / "_SUCCESS").exists()
    for path in out.iterdir():
        assert_complete(path)
    assert not descendants(process.pid), "a worker process outlived the run"
    assert subprocess.run([sys.executable, "-m", "capfilt", *argv], capture_output=True).returncode == 0
    assert outputs(out) == outputs(corpus / "reference")


def test_a_two_process_run_prints_only_its_own_lines_with_whole_run_totals(tiny_models, corpus, tmp_path):
    argv = run_argv(tiny_models, str(corpus / "in" / "*.tar"), tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-m", "capfilt", *argv, "--json", *TWO_WORKERS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("capfilt: ") for line in lines), done.stderr[-3000:]
    progress = [line for line in lines if " shards, " in line]
    assert progress[-1].startswith(f"capfilt: {SHARDS}/{SHARDS} shards, {SHARDS * 24} samples")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["input"] == SHARDS * 24 and summary["shards"] == SHARDS

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

from capfilt.pipeline import interrupt
from capfilt.pipeline.config import load_config
from capfilt.pipeline.shard.loaded_models import load_models
from capfilt.pipeline.shard.process import process_shard
from capfilt.pipeline.storage import TEMP_DIR
from tests.helpers import TEST_SETTINGS, assert_complete, outputs, run, run_argv, sample_members, write_shard

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
    complete_before = {p.name for p in out.glob("*_stats.json")}
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole foreground process group
    else:
        process.send_signal(signum)  # an orchestrator signals the process it started
    err = process.communicate(timeout=60)[1]
    assert process.returncode == code
    lines = err.strip().splitlines()
    assert all(line.startswith("capfilt: ") for line in lines), err[-3000:]
    complete = {p.name for p in out.glob("*_stats.json")}
    assert lines[-1] == f"capfilt: interrupted: {len(complete)}/{SHARDS} shards complete; rerun to resume"
    # Stops with the shards in hand, not after the run: past the signal at most the shard each worker was on
    # completes (when it was at its last batch), and no worker starts another.
    assert complete >= complete_before and len(complete - complete_before) <= workers
    assert len(complete) < SHARDS
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


def test_a_stop_ends_the_shard_at_the_batch_in_hand_and_leaves_no_file(tiny_models, tmp_path):
    """What a signal sets (``interrupt.STOP``) is heard between batches: the batch in hand is the last one,
    and the shard leaves nothing, under a final name or a temporary one."""
    settings = {"captioner.model": tiny_models[0], "filter.model": tiny_models[1], **TEST_SETTINGS}
    config = load_config("demo", overrides=[f"{key}={value}" for key, value in settings.items()])
    models = load_models(config, threads=0)  # 0: torch's thread count left as it is
    shard = write_shard(tmp_path / "00000.tar", [m for i in range(24) for m in sample_members(f"s{i:03d}")])
    batches = []

    def on_batch(samples: int, kept: int) -> None:
        batches.append(samples)
        if len(batches) == 2:
            interrupt.STOP.set()  # as the signal handler does, while the second of six batches is written

    out = tmp_path / "out"
    out.mkdir()
    try:
        with pytest.raises(interrupt.Interrupted):
            process_shard(str(shard), str(out), config, models, on_batch=on_batch)
    finally:
        interrupt.STOP.clear()
    assert batches == [4, 4]
    assert [p for p in out.rglob("*") if p.is_file()] == []

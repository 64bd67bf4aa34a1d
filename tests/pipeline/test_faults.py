"""Interruption and parallelism: a killed run, rerun, ends as an uninterrupted one; worker count changes nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from tests.helpers import assert_complete, outputs, run, run_argv, sample_members, write_shard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    inp = tmp_path_factory.mktemp("many") / "in"
    for shard in range(6):
        members = []
        for i in range(24):
            members += sample_members(f"k{shard}_{i:03d}", f"a red square {i}", color=(i * 10, 50, 200 - i * 5))
        write_shard(inp / f"{shard:05d}.tar", members)
    return inp


def argv(tiny_models, inp, out):
    """The tests' usual run as a subprocess, with a threshold that drops some samples."""
    run_args = run_argv(tiny_models, str(inp / "*.tar"), out)
    return [sys.executable, "-m", "capfilt", *run_args, "--set", "filter.threshold=0.5"]


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_rerun_ends_identical(tiny_models, many_shards, tmp_path, kill_after):
    reference = tmp_path / "reference"
    subprocess.run(argv(tiny_models, many_shards, reference), check=True, cwd=ROOT, capture_output=True)
    out = tmp_path / "killed"
    process = subprocess.Popen(
        argv(tiny_models, many_shards, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checked = 0
    deadline = time.monotonic() + 300
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "the run neither finished nor wrote a stats file in 300 s"
            visible = [p for p in out.glob("*") if p.is_file()] if out.exists() else []
            for path in visible:
                assert_complete(path)
                checked += 1
            if len([p for p in visible if p.name.endswith("_stats.json")]) >= kill_after:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "_SUCCESS").exists() and checked > 0
    subprocess.run(argv(tiny_models, many_shards, out), check=True, cwd=ROOT, capture_output=True)
    assert outputs(out) == outputs(reference)


def test_a_commit_failing_between_tar_and_stats_is_redone_on_rerun(tiny_models, shards, tmp_path, monkeypatch):
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run(tiny_models, shards, reference) == 0
    rename = FileSystems.rename

    def stats_write_fails(src, dst):
        if dst[0].endswith("00001_stats.json"):
            raise OSError("disk full")
        return rename(src, dst)

    # FnApiRunner runs the DoFn in this process, so the failure lands inside the real commit.
    monkeypatch.setattr(FileSystems, "rename", stats_write_fails)
    assert run(tiny_models, shards, out) == 1
    assert (out / "00001.tar").exists() and (out / "00001.parquet").exists()
    assert not (out / "00001_stats.json").exists() and not (out / "_SUCCESS").exists()
    monkeypatch.undo()
    assert run(tiny_models, shards, out) == 0
    assert outputs(out) == outputs(reference)


def test_two_worker_processes_give_identical_output(tiny_models, many_shards, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # Automatic threads: one process gets every core, two share them; the bytes must not care.
    assert run(tiny_models, many_shards, one, "--set", "runtime.threads=0") == 0
    assert (
        run(
            tiny_models,
            many_shards,
            two,
            "--set",
            "runtime.threads=0",
            "--",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        )
        == 0
    )
    assert outputs(one) == outputs(two)

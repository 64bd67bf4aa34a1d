"""Interruption and parallelism: a killed run, rerun, ends as an uninterrupted one; worker count changes nothing."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import sample_members, write_shard
from tests.test_pipeline import run, run_argv

ROOT = Path(__file__).resolve().parent.parent


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
    return [sys.executable, "-m", "pipeline", *run_args, "--set", "filter.threshold=0.5"]


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes, with the clock-dependent field of stats files removed."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "report.json":
            data = path.read_bytes()
            if path.name.endswith("_stats.json"):
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "seconds"}).encode()
            files[str(path.relative_to(out))] = data
    return files


def assert_complete(path: Path) -> None:
    """A file under a final name must be whole: a tar that reads to its end, parquet that loads, valid json."""
    if path.suffix == ".tar":
        with tarfile.open(path) as tar:
            for member in tar:
                tar.extractfile(member).read()
    elif path.suffix == ".parquet":
        pq.read_table(path)
    elif path.name.endswith(".json"):
        json.loads(path.read_text())


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_rerun_ends_identical(tiny_models, many_shards, tmp_path, kill_after):
    reference = tmp_path / "reference"
    subprocess.run(argv(tiny_models, many_shards, reference), check=True, cwd=ROOT, capture_output=True)
    out = tmp_path / "killed"
    process = subprocess.Popen(
        argv(tiny_models, many_shards, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checked = 0
    try:
        while process.poll() is None:
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

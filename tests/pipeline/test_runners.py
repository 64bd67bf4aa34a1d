"""The same job on Beam's portable runner (LOOPBACK and an EXTERNAL worker pool, as Flink runs Python
workers) and against S3 (moto on loopback) gives the FnApiRunner's bytes."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import outputs, run, run_argv, sample_members, write_shard

PORTABLE = ["--", "--runner=PortableRunner", "--job_endpoint=embed"]  # Beam's embedded job service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tiny_models, tmp_path_factory):
    """The FnApiRunner's output over two shards, and the input it came from."""
    root = tmp_path_factory.mktemp("runners")
    for shard in range(2):
        members = []
        for i in range(8):
            members += sample_members(f"r{shard}_{i}", None if i == 5 else f"a blue circle {i}", color=(9 * i, 90, 40))
        write_shard(root / "in" / f"{shard:05d}.tar", members)
    assert run(tiny_models, root / "in", root / "fnapi") == 0
    return root / "in", outputs(root / "fnapi")


def test_portable_runner_loopback(tiny_models, reference, tmp_path):
    inp, expected = reference
    assert (
        run(
            tiny_models,
            inp,
            tmp_path / "out",
            *PORTABLE,
            "--environment_type=LOOPBACK",
        )
        == 0
    )
    assert outputs(tmp_path / "out") == expected


def test_portable_runner_external_worker_pool(tiny_models, reference, tmp_path):
    inp, expected = reference
    port = free_port()
    # The pool starts workers as `python` from PATH, as in Beam's SDK container next to a Flink task manager.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        assert (
            run(
                tiny_models,
                inp,
                tmp_path / "out",
                *PORTABLE,
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{port}",
            )
            == 0
        )
    finally:
        pool.kill()
        pool.wait()
    assert outputs(tmp_path / "out") == expected


@pytest.fixture
def s3(tmp_path):
    """A moto S3 server on loopback and a bucket in it; yields (boto3 client, Beam S3 flags)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    client.create_bucket(Bucket="curation")
    flags = [
        f"--s3_endpoint_url={endpoint}",
        "--s3_access_key_id=test",
        "--s3_secret_access_key=test",
        "--s3_region_name=us-east-1",
    ]
    yield client, flags
    server.stop()


def objects(client, prefix: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket="curation", Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :]: client.get_object(Bucket="curation", Key=o["Key"])["Body"].read() for o in listing}


def test_s3_input_and_output_with_atomic_rename_and_resume(tiny_models, reference, s3, tmp_path):
    from capfilt.cli import main

    inp, expected = reference
    client, flags = s3
    for shard in sorted(inp.glob("*.tar")):
        client.put_object(Bucket="curation", Key=f"in/{shard.name}", Body=shard.read_bytes())
    argv = [*run_argv(tiny_models, "s3://curation/in/{00000..00001}.tar", "s3://curation/out"), "--", *flags]
    assert main(argv) == 0
    written = objects(client, "out/")
    assert not [k for k in written if k.startswith("_capfilt_tmp")]
    assert "_SUCCESS" in written and "report.html" in written
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        assert written[name] == expected[name], name
    # Resume: finished shards are skipped; other settings are refused, read from the shards' stats on S3.
    assert main(argv) == 0
    assert objects(client, "out/")["00000.tar"] == expected["00000.tar"]
    assert main(argv[: -len(flags) - 1] + ["--set", "filter.threshold=0.99", "--", *flags]) == 2
    assert main(argv[: -len(flags) - 1] + ["--set", "filter.threshold=0.99", "--overwrite", "--", *flags]) == 0
    assert objects(client, "out/")["00000.tar"] != expected["00000.tar"]

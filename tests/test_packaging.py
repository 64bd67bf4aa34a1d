"""The wheel alone carries what a Dataflow or Flink worker needs: pipelines.yaml and the demo models."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(dist.glob("capfilt-*.whl"))


def test_wheel_ships_config_and_demo_models(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "capfilt/pipeline/pipelines.yaml" in names
    for model in ("captioner", "itm"):
        assert f"capfilt/models/embedded/{model}/model.safetensors" in names
        assert f"capfilt/models/embedded/{model}/config.json" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_wheel_runs_the_demo_from_an_empty_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    # Dependencies from this environment, capfilt only from the wheel: the repository is not on the path.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        "PYTHONNOUSERSITE": "1",
    }
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import capfilt; print(capfilt.__file__)"],
        env=env,
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target))
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-m",
            "capfilt",
            "run",
            "demo",
            "--set",
            "demo_data.shards=1",
            "--set",
            "demo_data.samples_per_shard=16",
        ],
        env=env,
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (empty / "capfilt-demo" / "output" / "_SUCCESS").exists()
    assert (empty / "capfilt-demo" / "output" / "00000.tar").exists()

"""``runtime.dtype: auto``: validated with the other settings, recorded as what it resolved to, so shards made in
bfloat16 and in float32 never pass for each other when a run resumes."""

import json

import pytest

from capfilt.models import loading
from capfilt.pipeline.config import ConfigError, RunConfig, RuntimeConfig, load_config
from tests.helpers import run


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_resolves_by_the_device_and_fingerprints_as_the_resolved_dtype(monkeypatch, native, expected):
    monkeypatch.setattr(loading, "native_bfloat16", lambda device: native)
    auto = RunConfig(runtime=RuntimeConfig(dtype="auto", device="cpu")).resolved()
    assert auto.runtime.dtype == expected
    explicit = RunConfig(runtime=RuntimeConfig(dtype=expected, device="cpu"))
    assert auto.fingerprint() == explicit.fingerprint()
    other = RunConfig(runtime=RuntimeConfig(dtype="float32" if native else "bfloat16", device="cpu"))
    assert auto.fingerprint() != other.fingerprint()


def test_an_explicit_dtype_is_left_alone(monkeypatch):
    monkeypatch.setattr(loading, "native_bfloat16", lambda device: pytest.fail("probed for an explicit dtype"))
    config = RunConfig(runtime=RuntimeConfig(dtype="float16"))
    assert config.resolved() is config


def test_an_unknown_dtype_names_the_key():
    with pytest.raises(ConfigError, match=r"runtime\.dtype: must be float32, bfloat16, float16 or auto, not 'half'"):
        load_config("demo", overrides=["runtime.dtype=half"])


def test_a_run_with_auto_records_the_resolved_dtype_and_refuses_to_mix_with_the_other(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", "runtime.dtype=auto") == 0
    resolved = loading.resolve_dtype("auto", "cpu")
    other = "float32" if resolved == "bfloat16" else "bfloat16"
    stats = json.loads((out / "00000_stats.json").read_text())
    assert stats["settings"]["runtime"]["dtype"] == resolved
    assert json.loads((out / "report.json").read_text())["config"]["runtime"]["dtype"] == resolved
    # The same machine resumes; a machine whose auto means the other dtype is refused before any work.
    stamp = (out / "00000_stats.json").read_bytes()
    assert run(tiny_models, shards, out, "--set", f"runtime.dtype={resolved}") == 0
    assert (out / "00000_stats.json").read_bytes() == stamp
    assert run(tiny_models, shards, out, "--set", f"runtime.dtype={other}") == 2
    assert (out / "00000_stats.json").read_bytes() == stamp


def test_workers_resolve_auto_themselves_when_the_launcher_could_not(tiny_models, shards, tmp_path):
    # A cluster's launcher cannot know its workers' devices: the job gets auto, each worker records what it ran.
    import apache_beam as beam

    from capfilt.pipeline import beam_job
    from capfilt.pipeline.shard.reader import match_shards

    sets = [f"captioner.model={tiny_models[0]}", f"filter.model={tiny_models[1]}", "runtime.dtype=auto"]
    config = load_config("demo", overrides=[*sets, "captioner.max_length=4", "captioner.min_length=1"])
    assert config.runtime.dtype == "auto"
    with beam.Pipeline("FnApiRunner") as p:
        beam_job.build(p, config, match_shards(str(shards / "*.tar")), str(tmp_path / "out"), False, threads=1)
    stats = json.loads((tmp_path / "out" / "00000_stats.json").read_text())
    assert stats["settings"]["runtime"]["dtype"] == loading.resolve_dtype("auto", "cpu")
    assert stats["fingerprint"] == config.resolved().fingerprint() != config.fingerprint()

import socket
import threading

import pytest

from capfilt.cli import main
from capfilt.pipeline.config import PACKAGED_CONFIG, ConfigError, load_config

YAML = """
defaults:
  captioner: {model: m/cap, num_captions: 2}
  filter: {model: m/itm}
pipelines:
  base: {}
  strict:
    filter: {threshold: 0.7, policy: all}
    beam: {direct_num_workers: 2, save_main_session: true}
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(YAML)
    return str(path)


def test_defaults_merge_into_each_pipeline(config_file):
    config = load_config("strict", config_file)
    assert config.captioner.model == "m/cap" and config.captioner.num_captions == 2
    assert config.filter.threshold == 0.7 and config.filter.policy == "all"
    assert config.beam_args() == ["--runner=FnApiRunner", "--direct_num_workers=2", "--save_main_session"]


def test_set_overrides_with_dotted_keys_and_typed_values(config_file):
    config = load_config(
        "base", config_file, ["captioner.top_p=0.5", "filter.threshold=1", "seed=7", "captioner.prompt="]
    )
    assert config.captioner.top_p == 0.5 and config.filter.threshold == 1.0 and config.seed == 7
    assert config.captioner.prompt == ""


@pytest.mark.parametrize(
    "pipeline,overrides,message",
    [
        ("nope", [], "no pipeline named 'nope'"),
        ("base", ["captioner.temperature=2"], "captioner.temperature: unknown key"),
        ("base", ["captioner.num_captions=three"], "captioner.num_captions: expected int"),
        ("base", ["captioner.num_captions=true"], "captioner.num_captions: expected int"),
        ("base", ["filter.policy=majority"], "filter.policy: must be one of best, all, score_only"),
        ("base", ["filter.threshold=1.5"], "filter.threshold: must be between 0.0 and 1.0"),
        ("base", ["captioner.min_length=30"], "captioner.min_length: must be between"),
        ("base", ["captioner=3"], "captioner: expected a mapping"),
        ("base", ["novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_configuration_names_the_key(config_file, pipeline, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        load_config(pipeline, config_file, overrides)
    assert "\n" not in str(info.value)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("pipelines:\n  x:\n    filter: {treshold: 0.5}\n")
    with pytest.raises(ConfigError, match=rf"{path}: filter.treshold: unknown key"):
        load_config("x", str(path))


def test_packaged_config_has_the_named_pipelines():
    # The copy inside the installed package, which a worker or a user outside this checkout reads.
    assert PACKAGED_CONFIG.is_file() and PACKAGED_CONFIG.parent.name == "pipeline"
    for name in ("demo", "blip-base", "blip-large-dataflow", "blip-base-flink", "ci"):
        assert load_config(name, str(PACKAGED_CONFIG)).name == name
    assert load_config("ci", str(PACKAGED_CONFIG)).gates.active()


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["run", "nope"], "no pipeline named"),
        (["run", "demo", "--set", "captioner.bogus=1"], "captioner.bogus: unknown key"),
        (["run", "demo", "--config", "/no/such.yaml"], "config file not found"),
        (["run", "demo", "--input", "/no/such/dir/*.tar"], "matches no .tar"),
        (["run", "demo", "--set", "captioner.model=/no/model"], "captioner.model: '/no/model' not found"),
        (["run", "demo", "--set", "filter.model=/tmp"], "filter.model: '/tmp' is not a model directory"),
        (["run", "demo", "--set", "captioner.model=Salesforce/blip-image-captioning-base"], "HF_HUB_OFFLINE is set"),
        (["run", "demo", "--set", "runtime.device=cuda"], "runtime.device: 'cuda', but torch"),
        (["run", "demo", "--", "--runner=NoSuchRunner"], "is not a Beam runner"),
        (["frobnicate"], "invalid choice"),
        (["run", "demo", "--input", "{DUP}/*/00000.tar*"], "would both write 00000.tar"),
        (["demo-data", "--output", "out", "--correct-fraction", "1.5"], "correct_fraction must be within"),
        (["demo-data", "--output", "out", "--noise-mix", "correct=1,spam=2"], "unknown noise kind 'spam'"),
        (["demo-data", "--output", "out", "--noise-mix", "correct"], "'correct' is not KIND=WEIGHT"),
        (["demo-data", "--output", "out", "--noise-mix", "correct=0,empty=0"], "at least one kind"),
    ],
)
def test_cli_configuration_errors_exit_2_with_one_line(argv, fragment, capsys, tmp_path, monkeypatch):
    inputs = tmp_path.parent / f"{tmp_path.name}-inputs"
    for sub in ("a", "b"):
        (inputs / sub).mkdir(parents=True)
        (inputs / sub / "00000.tar").write_bytes(b"")
    argv = [arg.replace("{DUP}", str(inputs)) for arg in argv]
    monkeypatch.chdir(tmp_path)  # nothing must be written before the error
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_gates_are_config_with_keys_and_reasons_checked(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("pipelines:\n  x:\n    gates: {min_kept_fracton: 0.5}\n")
    with pytest.raises(ConfigError, match=rf"{path}: gates.min_kept_fracton: unknown key"):
        load_config("x", str(path))
    path.write_text("pipelines:\n  x:\n    gates: {max_dropped_fraction: {below_treshold: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"gates.max_dropped_fraction.below_treshold: not a drop reason \(valid: "):
        load_config("x", str(path))
    path.write_text("pipelines:\n  x:\n    gates: {max_dropped_fraction: {no_image: 2}, min_accuracy: 0.9}\n")
    with pytest.raises(ConfigError, match=r"gates.max_dropped_fraction.no_image: must be between 0.0 and 1.0"):
        load_config("x", str(path))
    path.write_text("pipelines:\n  x:\n    gates: {max_dropped_fraction: {no_image: 0.2}, min_accuracy: 0.9}\n")
    gates = load_config("x", str(path)).gates
    assert gates.max_dropped_fraction == {"no_image": 0.2} and gates.min_accuracy == 0.9 and gates.active()
    assert not load_config("x", str(path), ["gates.min_accuracy=null", "gates.max_dropped_fraction={}"]).gates.active()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stand-in for the hub on loopback that records each request line and hangs up without an answer, as a
    hub that cannot be reached leaves the client; online, with an empty cache."""
    from huggingface_hub import constants

    server = socket.create_server(("127.0.0.1", 0))
    requests: list[str] = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := connection.recv(4096)):
                    data += chunk
                requests.append(data.split(b"\r\n", 1)[0].decode())

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield requests
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept
    server.close()


def test_a_hub_id_not_in_the_cache_is_checked_with_one_request_when_online(hub, capsys):
    assert main(["run", "demo", "--set", "filter.model=Salesforce/blip-itm-base-coco"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "filter.model: 'Salesforce/blip-itm-base-coco'" in err
    assert "the Hugging Face hub did not answer" in err and "set it to a local directory" in err
    # One request for the model and no retry: a hub that does not answer costs the user one round trip (the
    # library's download retries back off for tens of seconds), and the error comes before any work.
    assert [r for r in hub if "blip-itm-base-coco" in r] == ["GET /api/models/Salesforce/blip-itm-base-coco HTTP/1.1"]


def test_a_folder_made_before_frame_choice_resumes_with_uniform_and_is_refused_with_the_new_default():
    from capfilt.pipeline.config import RunConfig, VideoConfig, settings_difference

    default = RunConfig().output_settings()
    before = {key: value for key, value in default.items() if key != "video"}  # what such a folder recorded
    assert settings_difference(before, default) == ["video.frame_choice None -> 'longest_shot'"]
    uniform = RunConfig(video=VideoConfig(frame_choice="uniform")).output_settings()
    assert uniform == before

"""`capfilt check`: gates named on the command line are validated like the config's, and each failure named."""

import json
import re
from pathlib import Path

import pytest

from capfilt.cli import main
from capfilt.pipeline.config import GatesConfig
from capfilt.pipeline.gates import failed_gates
from capfilt.pipeline.reasons import DROP_REASONS, NOTES

REPORT = {"totals": {"input": 100, "kept": 80, "failed_shards": ["00003"], "dropped": {"no_image": 15, "truncated": 5}}}


def test_each_gate_fails_on_its_own_figure():
    assert failed_gates(REPORT, GatesConfig()) == []
    failures = failed_gates(
        REPORT,
        GatesConfig(
            min_kept_fraction=0.81,
            max_failed_shards=0,
            max_dropped_fraction={"no_image": 0.1, "truncated": 0.05},
            min_accuracy=0.95,
        ),
        accuracy=0.9,
    )
    assert failures == [
        "min-kept-fraction: kept 0.8000 < 0.81",
        "max-failed-shards: 1 failed > 0",
        "max-dropped-fraction no_image: 0.1500 > 0.1",
        "min-accuracy: kept-caption accuracy 0.9000 < 0.95",
    ]
    assert failed_gates(REPORT, GatesConfig(min_kept_fraction=0.8, max_failed_shards=1)) == []
    # Without ground truth an accuracy gate cannot hold.
    assert failed_gates(REPORT, GatesConfig(min_accuracy=0.5)) == [
        "min-accuracy: kept-caption accuracy not measurable (no ground truth) < 0.5"
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-dropped-fraction", "below_treshold=0.1"], "--max-dropped-fraction below_treshold: not a drop reason"),
        (["--max-dropped-fraction", "no_image"], "--max-dropped-fraction no_image: expected REASON=FRACTION"),
        (["--min-kept-fraction", "1.5"], "--min-kept-fraction: must be between 0.0 and 1.0"),
        (["--max-failed-shards", "-1"], "--max-failed-shards: must be between 0 and"),
    ],
)
def test_check_refuses_bad_gates_in_one_line_with_exit_2(tmp_path, capsys, flags, message):
    assert main(["check", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"capfilt: error: {message}") and err.count("\n") == 1
    if "not a drop reason" in message:
        assert f"(valid: {', '.join(DROP_REASONS)})" in err


def test_readme_lists_exactly_the_drop_reasons_and_notes():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## What happens to bad data") :].split("\n## ", 1)[0]
    table = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert table == list(DROP_REASONS)
    notes = section[section.index("Not reasons to drop") :]
    assert set(re.findall(r"`(\w+)`", notes.split("\n\n", 1)[0])) >= set(NOTES)


def test_a_gate_in_the_config_runs_after_the_run(tiny_models, shards, tmp_path, capsys):
    from tests.helpers import run

    out = tmp_path / "out"
    # Two of the twelve samples have no caption: with no synthetic ones they are dropped whatever the model.
    code = run(tiny_models, shards, out, "--set", "captioner.num_captions=0", "--set", "gates.min_kept_fraction=0.9")
    assert code == 1
    assert "capfilt: gate failed: min-kept-fraction: kept 0.8333 < 0.9" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["config"]["gates"]["min_kept_fraction"] == 0.9

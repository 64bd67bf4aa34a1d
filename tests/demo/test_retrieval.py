"""`capfilt eval --retrieval`: the held-out set, the training sets of BLIP's Table 1, and the command end to end."""

import json

import pytest

from capfilt.cli import main
from capfilt.demo import contrastive, heldout, retrieval, world
from capfilt.demo.evaluate import ablation
from capfilt.demo.training_sets import RETRIEVAL_ROWS, read_samples, table1_sets
from tests.helpers import rows

TINY = contrastive.ContrastiveConfig(steps=3, batch_size=8, image_size=16, width=16, text_layers=1)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", world.WORLDS)
def test_heldout_set_is_disjoint_from_every_input_by_construction(tmp_path, kind):
    held = heldout.heldout_set(kind, size=200)
    assert held == heldout.heldout_set(kind, size=200)  # the same bytes every time
    assert len(set(held.captions)) == 200
    assert all(set(c.split()) <= set(world.VOCABULARY) for c in held.captions)
    for seed in range(3):
        paths = world.write_demo_shards(
            str(tmp_path / f"{seed}"), shards=2, samples_per_shard=50, seed=seed, world=kind
        )
        samples = read_samples(paths)
        encoded = [m.get("jpg", m.get("png")) for m in samples.values()]
        heldout.check_disjoint(held, encoded, [])
    # The check is real: a held-out image among the training images, as bytes or decoded, is refused.
    with pytest.raises(AssertionError, match="held-out"):
        heldout.check_disjoint(held, [*encoded, held.images[7]], [])
    with pytest.raises(AssertionError, match="held-out"):
        heldout.check_disjoint(held, [], [held.decoded()[3]])


@pytest.fixture(scope="module")
def lookalike_run(tmp_path_factory):
    """A small lookalike-world input cleaned by the demo pipeline (embedded models), as a user would run it."""
    root = tmp_path_factory.mktemp("lookalike")
    assert (
        main(
            ["demo-data", "--output", str(root / "in"), "--shards", "2", "--samples-per-shard", "24"]
            + ["--world", "lookalike"]
        )
        == 0
    )
    out = root / "out"
    assert (
        main(
            ["run", "demo", "--input", str(root / "in" / "*.tar"), "--output", str(out)]
            + ["--set", "runtime.threads=1"]
        )
        == 0
    )
    return root / "in", out


def test_table1_sets_hold_what_each_row_trains_on(lookalike_run):
    _, out = lookalike_run
    sets = {s.name: s for s in table1_sets(str(out))}
    assert list(sets) == list(RETRIEVAL_ROWS)
    kept = {r["name"]: r["kept"] for r in ablation(str(out))}
    assert len(sets["none"].texts) == kept["none"] and len(sets["filter"].texts) == kept["filter"]
    assert len(sets["synthetic_only"].texts) == kept["captioner"] == 48
    # BLIP's captioner row: each image with its web caption as it is and its first synthetic caption.
    assert len(sets["captioner"].texts) == kept["none"] + kept["captioner"]
    # The capfilt row is the output tars as written: the kept rows' keys and captions.
    parquet = [(r["key"], r["caption"]) for r in rows(out) if r["status"] == "kept"]
    assert list(zip(sets["capfilt"].keys, sets["capfilt"].texts, strict=True)) == parquet


def test_eval_ablation_retrieval_prints_and_records_every_row(lookalike_run, monkeypatch, capsys):
    inp, out = lookalike_run
    monkeypatch.setattr(retrieval, "CONFIG", TINY)
    monkeypatch.setattr(retrieval, "SEEDS", (0, 1))
    monkeypatch.setattr(heldout, "SIZE", 30)
    assert main(["eval", str(out), "--ablation", "--retrieval"]) == 0
    printed = capsys.readouterr().out
    assert "retrieval on 30 held-out lookalike-world pairs" in printed and "synthetic_only" in printed
    result = json.loads((out / "report.json").read_text())["retrieval"]
    assert result["world"] == "lookalike" and result["seeds"] == [0, 1] and result["config"]["steps"] == 3
    assert [r["name"] for r in result["rows"]] == list(RETRIEVAL_ROWS)
    for row in result["rows"]:
        assert len(row["per_seed"]) == 2
        for key in retrieval.COLUMNS:
            values = [r[key] for r in row["per_seed"]]
            assert row["mean"][key] == pytest.approx(sum(values) / 2)
            assert 0.0 <= min(values) and max(values) <= 1.0
    html = (out / "report.html").read_text()
    assert "Retrieval (BLIP Table 1)" in html and "i→t R@1" in html and "synthetic_only" in html
    noise = result["noise"]
    assert noise["web_captions"] == sum(r["web_score"] is not None for r in rows(out))
    assert noise["web_flagged"] == sum(r["web_score"] is not None and r["web_score"] < 0.5 for r in rows(out))


def test_table1_needs_the_runs_input(lookalike_run, tmp_path, capsys):
    inp, out = lookalike_run
    moved = tmp_path / "moved"
    inp.rename(moved)
    try:
        assert main(["eval", str(out), "--ablation", "--retrieval"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("capfilt: error:") and "input" in err and len(err.splitlines()) == 1
    finally:
        moved.rename(inp)


def test_eval_refuses_output_without_ground_truth(messy_run, capsys):
    _, out, _ = messy_run
    capsys.readouterr()
    assert main(["eval", str(out), "--retrieval"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("capfilt: error:") and "ground truth" in err and len(err.splitlines()) == 1

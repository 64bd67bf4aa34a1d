"""Quality metrics and the Table 1 ablation over hand-built capfilt output rows."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from capfilt.demo.evaluate import ablation, capfilt_misses, evaluate, format_ablation, format_evaluation
from capfilt.pipeline.shard.rows import ROW_SCHEMA

SCHEMA = ROW_SCHEMA  # the writer's own schema, so evaluation reads what the pipeline writes
G = [f"a small red circle on the left on a {c} background" for c in ("green", "blue", "white", "black", "grey")]
WRONG = "a large red circle on the left on a green background"


def _row(key, status, caption, source, score, web, web_score, texts, scores, gt, noise):
    meta = None if gt is None else json.dumps({"gt_caption": gt, "noise": noise, "url": f"https://demo.capfilt/{key}"})
    return {
        "key": key,
        "status": status,
        "error": "",
        "caption": caption,
        "source": source,
        "score": score,
        "web_text": web,
        "web_score": web_score,
        "synthetic_texts": texts,
        "synthetic_scores": scores,
        "json": meta,
    }


ROWS_A = [
    # A correct web caption that the filter keeps.
    _row("a0", "kept", G[0], "web", 0.9, G[0], 0.9, [G[0], WRONG], [0.8, 0.1], G[0], "correct"),
    # A wrong web caption replaced by a synthetic one.
    _row("a1", "kept", G[1], "synthetic", 0.86, WRONG, 0.3, [G[1], G[1]], [0.85, 0.86], G[1], "one_word_off"),
    # Nothing good enough: dropped.
    _row(
        "a2", "below_threshold", None, None, None, "click here", 0.01, [WRONG, WRONG], [0.2, 0.3], G[2], "boilerplate"
    ),
]
ROWS_B = [
    # No web caption; a synthetic caption right up to case and punctuation.
    _row(
        "b0",
        "kept",
        "A Small red circle on the left, on a BLACK background.",
        "synthetic",
        0.7,
        None,
        None,
        ["A Small red circle on the left, on a BLACK background."],
        [0.7],
        G[3],
        "missing",
    ),
    # A wrong web caption that the filter lets through.
    _row("b1", "kept", WRONG, "web", 0.6, WRONG, 0.6, [G[0]], [0.55], G[4], "other_image"),
    # An image that could not be decoded: no scores at all.
    _row("b2", "undecodable_image", None, None, None, "  ", None, [], [], G[4], "empty"),
    # A sample without json (no ground truth): never counts as correct.
    _row("b3", "no_image", None, None, None, "something", None, [], [], None, None),
]


def _write_run(directory, threshold=0.5, web_margin=0.0, shards=(ROWS_A, ROWS_B)):
    directory.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), directory / f"{i:05d}.parquet")
    report = {"config": {"filter": {"threshold": threshold, "web_margin": web_margin, "policy": "best"}}}
    (directory / "report.json").write_text(json.dumps(report))
    return str(directory)


def test_evaluate_counts_every_input_row(tmp_path):
    result = evaluate(_write_run(tmp_path / "run"))
    assert result["input"] == 7
    assert result["kept"] == 4
    assert result["kept_correct"] == 3
    assert result["kept_accuracy"] == pytest.approx(3 / 4)
    assert result["yield"] == pytest.approx(4 / 7)
    assert result["clean_yield"] == pytest.approx(3 / 7)
    assert result["web_accuracy"] == pytest.approx(1 / 7)
    per = result["per_noise"]
    assert list(per) == ["correct", "other_image", "one_word_off", "boilerplate", "empty", "missing", "unknown"]
    assert per["correct"] == {"count": 1, "kept": 1, "kept_correct": 1, "kept_web": 1, "kept_synthetic": 0}
    assert per["one_word_off"] == {"count": 1, "kept": 1, "kept_correct": 1, "kept_web": 0, "kept_synthetic": 1}
    assert per["other_image"] == {"count": 1, "kept": 1, "kept_correct": 0, "kept_web": 1, "kept_synthetic": 0}
    assert per["missing"]["kept_correct"] == 1
    assert per["boilerplate"]["kept"] == per["empty"]["kept"] == per["unknown"]["kept"] == 0
    text = format_evaluation(result)
    assert "0.750" in text and "one_word_off" in text


def test_ablation_rows_follow_blip_table_1(tmp_path):
    rows = {r["name"]: r for r in ablation(_write_run(tmp_path / "run"))}
    assert list(rows) == ["none", "filter", "captioner", "capfilt"]
    expected = {  # name: (kept, kept correct)
        "none": (5, 1),  # every non-empty web text: a0 a1 a2 b1 b3
        "filter": (2, 1),  # web score >= 0.5: a0 b1
        "captioner": (5, 3),  # the first synthetic caption wherever there is one
        "capfilt": (4, 3),  # the best of web and synthetic, at least 0.5
    }
    for name, (kept, correct) in expected.items():
        row = rows[name]
        assert (row["input"], row["kept"], row["kept_correct"]) == (7, kept, correct), name
        assert row["accuracy"] == pytest.approx(correct / kept)
        assert row["yield"] == pytest.approx(kept / 7)
        assert row["clean_yield"] == pytest.approx(correct / 7)
    text = format_ablation(list(rows.values()))
    assert text.splitlines()[0].split()[0] == "setting" and "capfilt" in text


def test_ablation_uses_the_runs_threshold_and_web_margin(tmp_path):
    close = [_row("c0", "kept", G[0], "synthetic", 0.85, WRONG, 0.8, [G[0]], [0.85], G[0], "one_word_off")]
    strict = {r["name"]: r for r in ablation(_write_run(tmp_path / "strict", threshold=0.82, shards=(close,)))}
    assert strict["filter"]["kept"] == 0
    assert strict["capfilt"]["kept_correct"] == 1
    # Within the margin the web caption wins, here wrongly.
    margin = {r["name"]: r for r in ablation(_write_run(tmp_path / "margin", web_margin=0.1, shards=(close,)))}
    assert margin["filter"]["kept"] == 1
    assert (margin["capfilt"]["kept"], margin["capfilt"]["kept_correct"]) == (1, 0)


def test_capfilt_misses_say_whose_mistake_each_lost_image_is():
    rows = (
        ROWS_A
        + ROWS_B
        + [
            # A right web caption outscored by a wrong synthetic one.
            _row("c0", "kept", WRONG, "synthetic", 0.7, G[1], 0.6, [WRONG], [0.7], G[1], "correct"),
            # A wrong web caption outscoring a right synthetic one.
            _row("c1", "kept", WRONG, "web", 0.9, WRONG, 0.9, [G[2], WRONG], [0.8, 0.2], G[2], "one_word_off"),
            # The right caption was there, but below the threshold.
            _row("c2", "below_threshold", None, None, None, None, None, [G[3]], [0.3], G[3], "missing"),
        ]
    )
    misses = capfilt_misses(rows, threshold=0.5)
    # a2, b1: no candidate was right; b2: never captioned; b3: no ground truth.
    assert misses == {
        "no_correct_candidate": 4,
        "correct_rejected": 1,
        "outranked_by_web": 1,
        "outranked_by_synthetic": 1,
    }
    # At a lower threshold c2 is kept, and c0's wrong synthetic caption still wins.
    assert capfilt_misses(rows, threshold=0.25)["correct_rejected"] == 0


def test_evaluate_needs_parquet(tmp_path):
    with pytest.raises(FileNotFoundError):
        evaluate(str(tmp_path))

"""Runs with contrastive similarity: its columns, the score the policy uses, and clip-retrieval's embeddings."""

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from capfilt.cli import main
from tests.helpers import rows, run


def _tar_keys(path) -> list[str]:
    with tarfile.open(path) as tar:
        return list(dict.fromkeys(m.name.split(".", 1)[0] for m in tar))


@pytest.mark.parametrize("backend", ["itc", "clip"])
def test_similarity_and_embeddings_follow_the_kept_samples(tiny_models, tiny_clip, shards, tmp_path, backend):
    model = "itc" if backend == "itc" else tiny_clip
    out = tmp_path / "out"
    sets = ["--set", f"similarity.model={model}", "--set", "similarity.embeddings=true"]
    assert run(tiny_models, shards, out, *sets) == 0
    for name in ("00000", "00001"):
        table = pq.read_table(out / f"{name}.parquet").to_pylist()
        kept = [r for r in table if r["status"] == "kept"]
        # Every scored candidate has a similarity beside its ITM score; the chosen caption's are both recorded.
        for row in kept:
            assert len(row["synthetic_similarities"]) == len(row["synthetic_texts"])
            assert (row["web_similarity"] is None) == (row["web_text"] is None)
            texts = [row["web_text"], *row["synthetic_texts"]]
            similarities = [row["web_similarity"], *row["synthetic_similarities"]]
            assert row["similarity"] == similarities[texts.index(row["caption"])]
        image = np.load(out / "img_emb" / f"img_emb_{name}.npy")
        text = np.load(out / "text_emb" / f"text_emb_{name}.npy")
        metadata = pq.read_table(out / "metadata" / f"metadata_{name}.parquet").to_pylist()
        # Rows in tar order, one per kept sample, float16 and unit length.
        assert [m["key"] for m in metadata] == _tar_keys(out / f"{name}.tar") == [r["key"] for r in kept]
        assert [m["caption"] for m in metadata] == [r["caption"] for r in kept]
        assert metadata[0]["url"] == json.loads(kept[0]["json"])["url"]
        assert image.dtype == text.dtype == np.float16 and image.shape == text.shape and len(image) == len(kept)
        assert np.allclose(np.linalg.norm(image.astype(np.float32), axis=1), 1, atol=2e-3)
        assert np.allclose(np.linalg.norm(text.astype(np.float32), axis=1), 1, atol=2e-3)
        dots = (image.astype(np.float32) * text.astype(np.float32)).sum(1)
        assert dots == pytest.approx([r["similarity"] for r in kept], abs=3e-3)
    # The json's capfilt object carries the similarity beside each score.
    with tarfile.open(out / "00000.tar") as tar:
        record = json.loads(tar.extractfile(next(m for m in tar if m.name.endswith(".json"))).read())["capfilt"]
    assert {"score", "similarity"} <= set(record) and record["by"] == "itm"
    assert all("similarity" in s for s in record["synthetic"]) and "similarity" in record["web"]


def test_filter_score_similarity_ranks_and_thresholds_by_the_cosine(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    sets = ["--set", "similarity.model=itc", "--set", "filter.score=similarity"]
    probe = tmp_path / "probe"
    assert run(tiny_models, shards, probe, *sets, "--set", "filter.threshold=-1") == 0
    best = sorted(max([r["web_similarity"] or -1, *r["synthetic_similarities"]]) for r in rows(probe))
    threshold = best[len(best) // 2]  # about half of the samples clear it
    assert run(tiny_models, shards, out, *sets, "--set", f"filter.threshold={threshold}") == 0
    table = rows(out)
    for row in table:
        candidates = [row["web_similarity"], *row["synthetic_similarities"]] if row["synthetic_similarities"] else []
        candidates = [c for c in candidates if c is not None]
        if row["status"] == "kept":
            assert row["similarity"] == max(candidates) >= threshold
        elif row["status"] == "below_threshold":
            assert max(candidates) < threshold
    kept = sum(r["status"] == "kept" for r in table)
    assert 0 < kept < len(table)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["filter.score=similarity"], "filter.score: similarity needs similarity.model"),
        (["similarity.embeddings=true"], "similarity.embeddings: needs similarity.model"),
        (["filter.threshold=1.5"], "filter.threshold: must be between 0.0 and 1.0"),
        (["similarity.model=itc", "filter.score=similarity", "filter.threshold=-1.5"], "between -1.0 and 1.0"),
        (["filter.score=clip"], "filter.score: must be one of itm, similarity"),
        (["similarity.model=/nowhere/clip"], "similarity.model: '/nowhere/clip' not found"),
    ],
)
def test_bad_similarity_settings_are_one_line_and_exit_2(tiny_models, shards, tmp_path, capsys, sets, message):
    argv = ["run", "demo", "--input", str(shards / "*.tar"), "--output", str(tmp_path / "out")]
    argv += ["--set", f"captioner.model={tiny_models[0]}", "--set", f"filter.model={tiny_models[1]}"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_cosine_threshold_below_zero_is_valid_for_similarity(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    sets = ["--set", "similarity.model=itc", "--set", "filter.score=similarity", "--set", "filter.threshold=-0.5"]
    assert run(tiny_models, shards, out, *sets) == 0
    assert pq.read_table(out / "00000.parquet").num_rows == 6


def test_report_bins_similarities_and_draws_the_threshold_on_the_score_the_policy_used(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    sets = ["--set", "similarity.model=itc", "--set", "filter.score=similarity", "--set", "filter.threshold=-0.2"]
    assert run(tiny_models, shards, out, *sets) == 0
    histograms = json.loads((out / "report.json").read_text())["histograms"]
    table = rows(out)
    assert histograms["threshold"] is None  # a cosine threshold has no place on the ITM axis
    similarity = histograms["similarity"]
    assert similarity["threshold"] == -0.2 and similarity["edges"][0] == -1 and similarity["edges"][-1] == 1
    assert sum(similarity["web"]) == sum(r["web_similarity"] is not None for r in table)
    assert sum(similarity["synthetic"]) == sum(len(r["synthetic_similarities"] or []) for r in table)
    html = (out / "report.html").read_text()
    assert "<h2>Similarities</h2>" in html and "threshold -0.2" in html


def test_a_run_without_similarity_reports_no_similarity_histogram(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert "similarity" not in report["histograms"] and report["histograms"]["threshold"] == 0
    assert "<h2>Similarities</h2>" not in (out / "report.html").read_text()

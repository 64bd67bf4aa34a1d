"""capfilt select over a scored folder: the global keep fraction, the threshold a run would apply, embeddings,
resume and determinism, and the refusals."""

import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from capfilt.cli import main
from tests.helpers import outputs, rows, run, sample_members, write_shard


def _scored(tiny_models, root, *sets, sizes=(5, 9, 2), embeddings=True):
    """A score_only run with ITC similarity (and embeddings) over shards of different sizes."""
    for shard, size in enumerate(sizes):
        members = []
        for i in range(size):
            members += sample_members(
                f"s{shard}_{i:03d}",
                ["a red square", "blue", "a large circle"][i % 3],
                color=((40 * i) % 255, 90, 200 - 10 * i),
            )
        write_shard(root / "in" / f"{shard:05d}.tar", members)
    scored = root / "scored"
    base = ["--set", "filter.policy=score_only", "--set", "similarity.model=itc"]
    base += ["--set", f"similarity.embeddings={str(embeddings).lower()}"]
    assert run(tiny_models, root / "in", scored, *base, *sets) == 0
    return scored


@pytest.fixture(scope="module")
def scored(tiny_models, tmp_path_factory):
    return _scored(tiny_models, tmp_path_factory.mktemp("pool"))


def _best(row, score="itm"):
    if score == "similarity":
        return max([row["web_similarity"] or -2, *row["synthetic_similarities"]])
    return max([row["web_score"] or -1, *row["synthetic_scores"]])


def test_keep_fraction_is_a_pool_wide_quantile_across_shards(scored, tmp_path, capsys):
    out = tmp_path / "sel"
    assert main(["select", str(scored), "--output", str(out), "--keep-fraction", "0.3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["input"] == 16 and summary["kept"] == 5
    table = rows(out)
    pool = rows(scored)
    assert [r["key"] for r in table] == [r["key"] for r in pool]  # every row of the pool is a row here
    kept = [r for r in table if r["status"] == "kept"]
    dropped = [r for r in table if r["status"] != "kept"]
    assert len(kept) == math.ceil(0.3 * len(pool))  # exact: 0.3 of 16 rounded up
    assert {r["status"] for r in dropped} == {"below_fraction"}
    # No dropped sample outscores a kept one, whatever shard each is in.
    assert max(_best(r) for r in dropped) <= min(_best(r) for r in kept)
    # Shards of 5, 9 and 2 samples do not each keep 30%: the cut is global.
    per_shard = {
        n: sum(r["status"] == "kept" for r in pq.read_table(out / f"{n}.parquet").to_pylist())
        for n in ("00000", "00001", "00002")
    }
    assert sum(per_shard.values()) == len(kept)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["select"]["pool"] == 16 and report["config"]["select"]["kept_target"] == len(kept)
    assert json.loads((out / "sizes.json").read_text()) == {f"{n}.tar": k for n, k in per_shard.items()}
    assert (out / "_SUCCESS").is_file()


def test_select_threshold_keeps_what_a_best_run_at_that_threshold_keeps(tiny_models, scored, tmp_path):
    pool = rows(scored)
    threshold = sorted(_best(r) for r in pool)[len(pool) // 2]
    selected = tmp_path / "sel"
    assert main(["select", str(scored), "--output", str(selected), "--threshold", str(threshold)]) == 0
    best = tmp_path / "best"
    sets = [
        "--set",
        "similarity.model=itc",
        "--set",
        "similarity.embeddings=true",
        "--set",
        f"filter.threshold={threshold}",
    ]
    assert run(tiny_models, scored.parent / "in", best, *sets) == 0
    assert [(r["key"], r["status"], r["caption"]) for r in rows(selected)] == [
        (r["key"], r["status"], r["caption"]) for r in rows(best)
    ]
    for name in ("00000", "00001", "00002"):
        # Member bytes copied, json rebuilt the same way: the tars are the run's, byte for byte.
        assert (selected / f"{name}.tar").read_bytes() == (best / f"{name}.tar").read_bytes()
        for folder, prefix in (("img_emb", "img_emb"), ("text_emb", "text_emb")):
            assert (selected / folder / f"{prefix}_{name}.npy").read_bytes() == (
                best / folder / f"{prefix}_{name}.npy"
            ).read_bytes()


def test_select_by_similarity_uses_the_cosines(tiny_models, tmp_path):
    scored = _scored(tiny_models, tmp_path, embeddings=False)
    out = tmp_path / "sel"
    assert (
        main(
            [
                "select",
                str(scored),
                "--output",
                str(out),
                "--keep-fraction",
                "0.5",
                "--score",
                "similarity",
                "--web-margin",
                "0",
            ]
        )
        == 0
    )
    table = rows(out)
    kept = [r for r in table if r["status"] == "kept"]
    dropped = [r for r in table if r["status"] != "kept"]
    assert len(kept) == 8
    assert max(_best(r, "similarity") for r in dropped) <= min(_best(r, "similarity") for r in kept)
    assert all(r["similarity"] == _best(r, "similarity") for r in kept)


def test_embeddings_of_the_selection_are_the_scored_rows_of_the_kept_samples(scored, tmp_path):
    out = tmp_path / "sel"
    assert main(["select", str(scored), "--output", str(out), "--keep-fraction", "0.4"]) == 0
    with_files = 0
    for name in ("00000", "00001", "00002"):
        source_keys = [m["key"] for m in pq.read_table(scored / "metadata" / f"metadata_{name}.parquet").to_pylist()]
        kept = [r["key"] for r in pq.read_table(out / f"{name}.parquet").to_pylist() if r["status"] == "kept"]
        if not kept:  # a shard with no kept sample has no embedding files (embedding-reader cannot pair empty ones)
            assert not list(out.glob(f"*/*_{name}.*"))
            continue
        with_files += 1
        keys = [m["key"] for m in pq.read_table(out / "metadata" / f"metadata_{name}.parquet").to_pylist()]
        assert keys == kept
        for folder in ("img_emb", "text_emb"):
            source = np.load(scored / folder / f"{folder}_{name}.npy")
            selected = np.load(out / folder / f"{folder}_{name}.npy")
            assert selected.dtype == np.float16
            assert np.array_equal(selected, source[[source_keys.index(k) for k in keys]])
    assert with_files >= 2


def test_select_reruns_are_byte_identical_and_resume(scored, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["select", str(scored), "--output", str(out), "--keep-fraction", "0.3"]) == 0
    assert outputs(first) == outputs(second)
    # A shard lost (as if the run had been stopped before it) is redone; the others are skipped.
    for path in second.glob("00001*"):
        path.unlink()
    before = (second / "00000.tar").stat().st_mtime_ns
    assert main(["select", str(scored), "--output", str(second), "--keep-fraction", "0.3"]) == 0
    assert outputs(first) == outputs(second)
    assert (second / "00000.tar").stat().st_mtime_ns == before
    # Another fraction into the same folder would mix two selections: refused, naming the change.
    assert main(["select", str(scored), "--output", str(second), "--keep-fraction", "0.5"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keep-fraction", "0"], "--keep-fraction must be in (0, 1]"),
        (["--keep-fraction", "1.5"], "--keep-fraction must be in (0, 1]"),
        (["--threshold", "1.5"], "--threshold for itm must be between 0.0 and 1.0"),
        (["--keep-fraction", "0.3", "--threshold", "0.5"], "not allowed with argument"),
        (["--keep-fraction", "0.3", "--score", "similarity", "--web-margin", "0.1"], "same --score and --web-margin"),
    ],
)
def test_bad_selection_arguments_exit_2_in_one_line(scored, tmp_path, capsys, argv, message):
    out = tmp_path / "sel"
    assert main(["select", str(scored), "--output", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_damaged_or_unscored_folders_are_refused(tiny_models, scored, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(scored, damaged)
    (damaged / "00001.parquet").unlink()
    assert main(["select", str(damaged), "--output", str(tmp_path / "o1"), "--keep-fraction", "0.3"]) == 2
    assert "shard 00001 has stats but no 00001.parquet" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "nothing"), "--output", str(tmp_path / "o2"), "--threshold", "0.5"]) == 2
    assert "no capfilt output here" in capsys.readouterr().err
    assert main(["select", str(scored), "--output", str(scored), "--threshold", "0.5"]) == 2
    assert "output" in capsys.readouterr().err
    plain = tmp_path / "plain"
    assert run(tiny_models, scored.parent / "in", plain, "--set", "filter.policy=score_only") == 0
    capsys.readouterr()
    assert (
        main(
            ["select", str(plain), "--output", str(tmp_path / "o3"), "--keep-fraction", "0.3", "--score", "similarity"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "scored without similarity" in err and len(err.splitlines()) == 1


def test_a_shard_the_scored_run_could_not_read_stays_failed(tiny_models, tmp_path):
    write_shard(tmp_path / "in" / "00000.tar", sample_members("a") + sample_members("b", "blue"))
    (tmp_path / "in" / "00001.tar").write_bytes(b"")
    scored = tmp_path / "scored"
    assert run(tiny_models, tmp_path / "in", scored, "--set", "filter.policy=score_only") == 0
    out = tmp_path / "sel"
    assert main(["select", str(scored), "--output", str(out), "--keep-fraction", "0.5"]) == 0
    assert pq.read_table(out / "00001.parquet").num_rows == 0 and (out / "00001.tar").is_file()
    totals = json.loads((out / "report.json").read_text())["totals"]
    assert totals["failed_shards"] == ["00001"] and totals["kept"] == 1 and totals["input"] == 2
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 1, "00001.tar": 0}


def test_select_on_the_portable_runner_gives_the_fnapi_runners_bytes(scored, tmp_path):
    argv = ["select", str(scored), "--keep-fraction", "0.3"]
    assert main([*argv, "--output", str(tmp_path / "fnapi")]) == 0
    portable = ["--", "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
    assert main([*argv, "--output", str(tmp_path / "portable"), *portable]) == 0
    assert outputs(tmp_path / "portable") == outputs(tmp_path / "fnapi")

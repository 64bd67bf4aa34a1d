"""capfilt select --dedup: exact copies by media hash, semantic copies by image embedding, each group keeping its
best-scored sample, checked against groups the test finds itself (hashes, brute-force cosines); semantic groups are
stars around a kept sample, which cannot chain two far samples together."""

from __future__ import annotations

import json

import numpy as np
import pytest

from capfilt.cli import main
from capfilt.pipeline import storage
from capfilt.pipeline.select import dedup
from tests.helpers import image_bytes, outputs, rows, run, write_shard

# Origins by colour: each shard holds some, and copies of others (the same bytes, or the same picture at another
# size, which the models see as the same pixels once resized).
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (120, 60, 10)]
LAYOUT = [  # (colour, size) per sample, per shard
    [(0, (24, 16)), (1, (24, 16)), (2, (24, 16)), (3, (24, 16))],
    [(0, (24, 16)), (4, (24, 16)), (1, (30, 20)), (5, (24, 16))],
    [(0, (24, 16)), (2, (24, 16)), (4, (18, 12))],
]
CAPTIONS = ["a red square", "green", "a blue circle", "a large square", "small", "a red circle"]


def _members(shard: int, i: int, colour: int, size) -> list[tuple[str, bytes]]:
    key = f"s{shard}_{i:02d}"
    caption = CAPTIONS[(colour + shard + i) % len(CAPTIONS)]
    meta = json.dumps({"url": f"https://example.com/{key}.jpg"}).encode()
    return [(f"{key}.jpg", image_bytes(COLOURS[colour], size)), (f"{key}.txt", caption.encode()), (f"{key}.json", meta)]


@pytest.fixture(scope="module")
def scored(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("dups")
    for shard, layout in enumerate(LAYOUT):
        members = [m for i, (colour, size) in enumerate(layout) for m in _members(shard, i, colour, size)]
        write_shard(root / "in" / f"{shard:05d}.tar", members)
    sets = ["--set", "filter.policy=score_only", "--set", "similarity.model=itc", "--set", "similarity.embeddings=true"]
    assert run(tiny_models, root / "in", root / "scored", *sets) == 0
    return root / "scored"


def _pool(scored) -> list[dict]:
    """The selectable rows, each with its shard, its best ITM score and its image embedding."""
    pool = []
    for shard in ("00000", "00001", "00002"):
        embeddings = np.load(scored / "img_emb" / f"img_emb_{shard}.npy").astype(np.float32)
        kept = [r for r in rows_of(scored, shard) if r["status"] == "kept"]
        for row, embedding in zip(kept, embeddings, strict=True):
            best = max([row["web_score"], *row["synthetic_scores"]])
            pool.append({**row, "shard": shard, "best": best, "embedding": embedding})
    return pool


def rows_of(folder, shard: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(folder / f"{shard}.parquet").to_pylist()


def _winner(group: list[dict]) -> str:
    best = min(group, key=lambda r: (-r["best"], r["shard"], r["key"]))
    return f"{best['shard']}/{best['key']}"


def _stars(pool: list[dict], eps: float) -> dict[str, str | None]:
    """By brute force over every pair, best-ranked first: each sample's kept copy, the best-ranked already kept
    sample at cosine >= 1 - eps to it (None: it is kept itself)."""
    order = sorted(range(len(pool)), key=lambda i: (-pool[i]["best"], pool[i]["shard"], pool[i]["key"]))
    vectors = np.stack([r["embedding"] for r in pool])
    close = vectors @ vectors.T >= 1 - eps
    kept, centre = [], {}
    for i in order:
        j = next((j for j in kept if close[i, j]), None)
        name = f"{pool[i]['shard']}/{pool[i]['key']}"
        centre[name] = None if j is None else f"{pool[j]['shard']}/{pool[j]['key']}"
        if j is None:
            kept.append(i)
    return centre


def _decisions(out) -> dict[str, dict]:
    return {f"{s}/{r['key']}": r for s in ("00000", "00001", "00002") for r in rows_of(out, s)}


def test_exact_keeps_the_best_scored_copy_of_each_media_hash(scored, tmp_path):
    out = tmp_path / "exact"
    assert main(["select", str(scored), "--output", str(out), "--threshold", "0", "--dedup", "exact"]) == 0
    decided = _decisions(out)
    groups: dict[str, list[dict]] = {}
    for row in _pool(scored):
        groups.setdefault(row["sha256"], []).append(row)
    assert len(groups) < len(_pool(scored)), "the pool holds byte copies"
    for group in groups.values():
        winner = _winner(group)
        assert decided[winner]["status"] == "kept" and decided[winner]["duplicate_of"] is None
        for row in group:
            name = f"{row['shard']}/{row['key']}"
            if name != winner:
                assert (decided[name]["status"], decided[name]["duplicate_of"]) == ("duplicate", winner)
    copies = sum(len(g) - 1 for g in groups.values())
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["dropped"] == {"duplicate": copies}
    shown = [e for e in report["examples"] if e["status"] == "duplicate"]
    assert shown and all(e["kept_copy"]["thumbnail"].startswith("data:image/jpeg") for e in shown)
    assert all(f"{e['kept_copy']['shard']}/{e['kept_copy']['key']}" == e["duplicate_of"] for e in shown)
    page = (out / "report.html").read_text()
    first = shown[0]
    section = page[page.index("Duplicate groups") :]
    assert section.index(f"kept copy: {first['duplicate_of']}") < section.index(f"duplicate: {first['shard']}/")
    # Every member of a kept sample still travels; a duplicate is a row, not a tar member.
    assert sum(json.loads((out / "sizes.json").read_text()).values()) == len(groups)


def test_semantic_stars_match_brute_force_and_keep_fraction_counts_the_survivors(scored, tmp_path):
    eps = 0.02
    out = tmp_path / "semantic"
    argv = ["select", str(scored), "--output", str(out), "--keep-fraction", "0.5", "--dedup", "semantic"]
    assert main([*argv, "--dedup-eps", str(eps)]) == 0
    decided = _decisions(out)
    stars = _stars(_pool(scored), eps)  # a pool this small is one cluster: no pair can straddle two
    assert any(stars.values())
    for name, kept in stars.items():
        if kept is None:
            assert decided[name]["status"] != "duplicate"
        else:
            assert (decided[name]["status"], decided[name]["duplicate_of"]) == ("duplicate", kept)
    assert not (out / storage.TEMP_DIR).exists()  # the blocks the grouping spilled went with the run
    report = json.loads((out / "report.json").read_text())
    survivors = sum(kept is None for kept in stars.values())
    assert report["config"]["select"]["pool"] == survivors  # the fraction is of the survivors
    assert report["totals"]["kept"] == -(-survivors // 2)
    assert report["config"]["select"]["dedup"] == "semantic" and report["config"]["select"]["dedup_eps"] == eps


def test_split_clusters_remove_only_samples_close_to_the_copy_they_name(scored, tmp_path, monkeypatch):
    monkeypatch.setattr(dedup, "CLUSTER_TARGET", 3)  # several clusters
    monkeypatch.setattr(dedup, "MAX_CLUSTER", 2)  # and every large one split
    eps = 0.02
    out = tmp_path / "split"
    argv = ["select", str(scored), "--output", str(out), "--threshold", "0", "--dedup", "semantic"]
    assert main([*argv, "--dedup-eps", str(eps)]) == 0
    pool = {f"{r['shard']}/{r['key']}": r for r in _pool(scored)}
    decided = _decisions(out)
    removed = [(name, row["duplicate_of"]) for name, row in decided.items() if row["status"] == "duplicate"]
    assert removed
    for name, kept in removed:
        # Splitting can only miss copies, never invent them: what a duplicate names stays, ranks higher, and is
        # as close to it as eps says, which anyone can check from the embeddings.
        assert decided[kept]["status"] != "duplicate"
        assert (-pool[kept]["best"], kept) <= (-pool[name]["best"], name)
        assert float(pool[kept]["embedding"] @ pool[name]["embedding"]) >= 1 - eps


def test_dedup_reruns_are_byte_identical_on_two_workers(scored, tmp_path):
    argv = ["--threshold", "0", "--dedup", "semantic", "--dedup-eps", "0.02"]
    assert main(["select", str(scored), "--output", str(tmp_path / "one"), *argv]) == 0
    two = ["--", "--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    assert main(["select", str(scored), "--output", str(tmp_path / "two"), *argv, *two]) == 0
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    assert any(r["status"] == "duplicate" for r in rows(tmp_path / "one"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dedup", "exact", "--dedup-eps", "0.1"], "--dedup-eps applies to --dedup semantic only"),
        (["--dedup", "semantic", "--dedup-eps", "1.5"], "--dedup-eps must be between 0 and 1"),
    ],
)
def test_bad_dedup_arguments_exit_2_in_one_line(scored, tmp_path, capsys, extra, message):
    assert main(["select", str(scored), "--output", str(tmp_path / "o"), "--threshold", "0", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_semantic_without_embeddings_says_how_to_score_with_them(tiny_models, tmp_path, capsys):
    write_shard(tmp_path / "in" / "00000.tar", _members(0, 0, 0, (24, 16)) + _members(0, 1, 0, (24, 16)))
    assert run(tiny_models, tmp_path / "in", tmp_path / "scored", "--set", "filter.policy=score_only") == 0
    capsys.readouterr()
    argv = ["select", str(tmp_path / "scored"), "--output", str(tmp_path / "o"), "--threshold", "0"]
    assert main([*argv, "--dedup", "semantic"]) == 2
    err = capsys.readouterr().err.strip()
    assert "similarity.embeddings=true" in err and len(err.splitlines()) == 1
    assert main([*argv, "--dedup", "exact"]) == 0  # exact needs only the hashes every run records
    decided = rows(tmp_path / "o")
    assert sorted(r["status"] for r in decided) == ["duplicate", "kept"]  # the same bytes twice: one stays


def _ranked(vectors: np.ndarray, scores) -> list[tuple]:
    return [
        ((-float(b), "00000", f"k{i:04d}"), "00000", f"k{i:04d}", v) for i, (b, v) in enumerate(zip(scores, vectors))
    ]


def test_stars_in_blocks_and_a_flood_of_one_image_give_the_brute_force_decisions(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 16))
    near = base[:10] + 0.001 * rng.standard_normal((10, 16))  # copies of the first ten
    chain = base[20] + np.arange(1, 12)[:, None] * 0.04 * base[21]  # each close to the next, far from the last
    flood = np.repeat(base[10:11], 300, axis=0)  # one placeholder picture, 300 times
    vectors = np.concatenate([base, near, chain, flood])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    members = _ranked(vectors, [i % 7 for i in range(len(vectors))])
    pool = [{"shard": "00000", "key": m[2], "best": -m[0][0], "embedding": m[3].astype(np.float32)} for m in members]
    expected = {name[len("00000/") :]: kept for name, kept in _stars(pool, 0.01).items() if kept}
    found = {key: kept for _, (key, kept) in dedup.star_duplicates(members, 0.01)}
    assert found == expected and len(found) >= 10 + 300 + 5
    monkeypatch.setattr(dedup, "COSINE_FLOATS", 64)  # a few rows of the matrix at a time
    assert {key: kept for _, (key, kept) in dedup.star_duplicates(members, 0.01)} == expected


@pytest.mark.parametrize("floats", [1, 3, dedup.COSINE_FLOATS])  # a row, two rows, the whole matrix at a time
def test_a_duplicate_is_close_to_the_kept_sample_it_names_not_only_through_another(monkeypatch, floats):
    monkeypatch.setattr(dedup, "COSINE_FLOATS", floats)
    eps, angle = 0.01, 0.1  # cos 0.1 = 0.995 >= 1 - eps, but cos 0.2 = 0.980 is not
    a, b, c = (np.array([np.cos(t), np.sin(t), 0.0], np.float16) for t in (0.0, angle, 2 * angle))
    assert a.astype(np.float32) @ c.astype(np.float32) < 1 - eps  # connected pairs would chain a to c through b

    def decided(scores: dict[str, float]) -> dict[str, str]:
        members = _ranked(np.stack([a, b, c]), [scores["a"], scores["b"], scores["c"]])
        names = {"k0000": "a", "k0001": "b", "k0002": "c"}
        return {names[key]: names[kept.split("/")[1]] for _, (key, kept) in dedup.star_duplicates(members, eps)}

    assert decided({"a": 0.5, "b": 0.9, "c": 0.1}) == {"a": "b", "c": "b"}  # b best: both are its copies
    assert decided({"a": 0.9, "b": 0.5, "c": 0.1}) == {"b": "a"}  # a best: c is far from it, and b is gone: c stays
    assert decided({"a": 0.9, "b": 0.1, "c": 0.5}) == {"b": "a"}  # b near two kept: the better-ranked one


def test_each_shard_spills_its_clusters_once_and_the_blocks_give_back_every_sample(tmp_path):
    rng = np.random.default_rng(1)
    keys = ["a", "ключ-2", "with space", "x" * 40, "b.c", "000", "z", "émoji 🙂"]
    embeddings = rng.standard_normal((len(keys), 8))
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float16)
    best = rng.random(len(keys))
    vectors = dedup.Vectors("sub/00001", keys, best, embeddings)
    centroids = embeddings[:3].astype(np.float64)
    refs = list(dedup.spilled_clusters(vectors, centroids, np.array([3, 3, 2]), 0, str(tmp_path)))
    # What goes through the shuffle names a block; it holds no vector.
    assert all(isinstance(x, (str, int)) for _, ref in refs for x in ref)
    assert len({ref[1] for _, ref in refs}) == 1  # one file per shard
    back = {}
    for (cluster, _), ref in refs:
        members = dedup.read_block(ref)
        assert set(dedup.nearest(np.stack([m[3] for m in members]).astype(np.float32), centroids)) == {cluster}
        back.update({m[2]: m for m in members})
    assert sorted(back) == sorted(keys)
    for i, key in enumerate(keys):
        rank, shard, _, vector = back[key]
        assert rank == (-float(best[i]), "sub/00001", key) and shard == "sub/00001"
        assert vector.tobytes() == embeddings[i].tobytes()


def test_default_eps_follows_the_model_that_made_the_image_embeddings():
    # With similarity.model itc the embeddings are the filter's own: a SigLIP filter's, not BLIP's ITC head's.
    assert dedup.default_eps("itc", "embedded:siglip") == dedup.default_eps("embedded:siglip", "embedded:itm")
    assert dedup.default_eps("itc", "embedded:itm") == dedup.DEFAULT_EPS["embedded:itm"]
    assert dedup.default_eps("itc", "embedded:siglip") != dedup.default_eps("itc", "embedded:itm")
    assert dedup.default_eps("openai/clip-vit-base-patch32", "embedded:itm") == dedup.FALLBACK_EPS

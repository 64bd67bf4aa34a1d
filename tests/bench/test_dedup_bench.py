"""bench.dedup's synthetic pool is a scored folder ``capfilt select --dedup semantic`` reads, and its recall
figures count what the selection did."""

import numpy as np
import pyarrow.parquet as pq

from bench.dedup import brute_force_recall, kept_copies, plan_pool, planted_recall, write_pool
from capfilt.cli import main

EPS = 0.05


def _pool(tmp_path):
    pool = plan_pool(400, 100, dim=16, centres=20, spread=1.0, copies=0.1, eps=EPS, seed=3)
    return pool, write_pool(pool, tmp_path / "pool", subset=200)


def test_planted_copies_lie_in_other_shards_close_to_their_originals(tmp_path):
    pool, truth = _pool(tmp_path)
    assert len(pool.origin) == 40 and not set(pool.origin) & set(pool.copy)
    assert (pool.origin // pool.per_shard != pool.copy // pool.per_shard).all()
    cosines = (truth.origin16.astype(np.float32) * truth.copy16.astype(np.float32)).sum(1)
    assert cosines.min() >= 1 - EPS / 4 - 1e-3  # float16 rounding only
    written = np.load(tmp_path / "pool" / "img_emb" / "img_emb_00001.npy")
    assert written.dtype == np.float16 and written.shape == (100, 16)
    assert np.allclose(np.linalg.norm(written.astype(np.float32), axis=1), 1, atol=1e-2)


def test_select_reads_the_pool_and_one_cluster_finds_every_planted_copy(tmp_path):
    pool, truth = _pool(tmp_path)
    out = tmp_path / "out"
    argv = ["select", str(tmp_path / "pool"), "--output", str(out), "--threshold", "0"]
    assert main([*argv, "--dedup", "semantic", "--dedup-eps", str(EPS)]) == 0
    kept_copy, statuses = kept_copies(out, pool)
    assert statuses == {"kept": 360, "duplicate": 40}
    # 400 samples make one cluster: no pair can straddle two, so recall is complete.
    planted = planted_recall(pool, truth, kept_copy, EPS)
    assert (planted["pairs"], planted["found"], planted["elsewhere"], planted["under"]) == (40, 40, 0, 0)
    brute = brute_force_recall(pool, truth, kept_copy, EPS)
    assert brute["pairs"] == brute["planted"] == brute["beyond"] == brute["marked"] > 0
    assert brute["outside"] == 0 and brute["samples"] < 400
    # Kept samples' members travel byte for byte from the pool's tar.
    rows = pq.read_table(out / "00000.parquet", columns=["key", "status", "sha256"]).to_pylist()
    source = pq.read_table(tmp_path / "pool" / "00000.parquet", columns=["key", "sha256"]).to_pylist()
    assert [r["sha256"] for r in rows] == [r["sha256"] for r in source]

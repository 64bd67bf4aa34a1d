"""Semantic deduplication at scale: ``capfilt select --dedup semantic`` on synthetic pools of 100k and 1M samples,
timed against the same selection without ``--dedup``, and the near-copies it finds. Prints figures; asserts
nothing. The README's figures:

    python -m bench.dedup --sizes 100000 1000000 --per-shard 10000 --dim 64 --centres 1000 --copies 0.1 --eps 0.01

No model runs. Each pool is a scored folder written shard by shard, as ``capfilt select`` reads one: ``NAME.tar``
(one tiny JPEG per sample), ``NAME.parquet`` (every row kept, with a web ITM score), ``NAME_stats.json`` (one
fingerprint for all), clip-retrieval's ``img_emb``/``text_emb`` files (float16, L2-normalised) and a
``report.json`` whose config has ``similarity.embeddings``. The image embeddings are unit vectors around
``--centres`` points drawn uniformly on the sphere (noise of norm ``--spread`` around each); a ``--copies`` share
of the pool are planted near-copies of other samples (cosine ≥ 1 − eps/4 to them), each in another shard than its
original.

Per size: wall and CPU seconds and the peak RSS of the largest process of the tree, for the selection without and
with ``--dedup semantic`` (interleaved ``--repeat`` times; medians), their difference (what deduplication costs),
then recall. Links inside a cluster are exact cosines, so every missed planted pair (all are over the threshold,
which is checked) is one whose two samples fell into different clusters or splits: SemDeDup's known misses.
Brute force on a subset (every sample of some whole synthetic centres; copies travel with their original's
centre) also counts pairs nobody planted. Pools go to ``--workdir`` (a temporary folder by default) and are
removed after each size unless ``--keep``; a 1M pool takes about 1.8 GB, and each selection writes a larger
output beside it (a caption and a json member per sample).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from bench.bench import LAST_CPU_SECONDS, load_average, measured, median
from capfilt.pipeline.cores import usable_cores
from capfilt.pipeline.report.build import REPORT_JSON, build_report
from capfilt.pipeline.select.dedup import FALLBACK_EPS, cluster_count
from capfilt.pipeline.shard.embeddings import METADATA_SCHEMA
from capfilt.pipeline.shard.rows import ROW_SCHEMA
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter
from capfilt.pipeline.stats import HISTOGRAM_BINS, Stats

FINGERPRINT = "bench.dedup synthetic pool"  # one for every shard: select refuses a pool that mixes settings
CONFIG = {  # what select reads of the scored run's config (settings.load_select_config)
    "name": "bench.dedup",
    "filter": {"score": "itm", "policy": "score_only", "threshold": 0.0, "web_margin": 0.0},
    "similarity": {"model": "embedded:clip", "embeddings": True},
}


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def tiny_jpeg() -> bytes:
    """A 16x16 JPEG: the report's example thumbnails decode it; each sample appends its key (after the end-of-image
    marker, which decoders ignore), so no two samples have the same bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 140, 200)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


JPEG = tiny_jpeg()


@dataclass(frozen=True)
class Pool:
    """A synthetic pool: ``size`` samples with global ids ``0..size-1``, shard ``s`` holding ids
    ``s * per_shard ..``; ``copy[i]`` is a planted copy (at cosine ``cosine[i]``) of ``origin[i]``."""

    size: int
    shards: int
    per_shard: int
    spread: float
    seed: int
    centres: np.ndarray
    origin: np.ndarray
    copy: np.ndarray
    cosine: np.ndarray

    @staticmethod
    def name(shard: int) -> str:
        return f"{shard:05d}"

    def rows(self, shard: int) -> range:
        return range(shard * self.per_shard, min(self.size, (shard + 1) * self.per_shard))

    def global_id(self, key: str) -> int:
        shard, row = key.rsplit("/", 1)[-1].split("_")
        return int(shard) * self.per_shard + int(row)

    def originals(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every row of ``shard`` drawn as an original (copies replace some rows later): unit vectors (float32),
        their centres, web scores and similarities. The same on every call."""
        rng = np.random.default_rng([self.seed, 2, shard])
        n, (count, dim) = len(self.rows(shard)), self.centres.shape
        centre = rng.integers(count, size=n)
        noise = rng.standard_normal((n, dim)) * (self.spread / math.sqrt(dim))  # norm ≈ spread
        vectors = unit(self.centres[centre] + noise).astype(np.float32)
        return vectors, centre, rng.random(n), rng.uniform(0.1, 0.4, n)


def plan_pool(size: int, per_shard: int, dim: int, centres: int, spread: float, copies: float, eps: float, seed: int):
    per_shard = math.ceil(size / max(2, math.ceil(size / per_shard)))  # a copy goes to another shard
    shards = math.ceil(size / per_shard)
    rng = np.random.default_rng([seed, 1])
    points = unit(rng.standard_normal((centres, dim)))
    pairs = round(size * copies)
    origin = rng.choice(size, pairs, replace=False)
    copy = _placed(origin, size, per_shard, shards, rng)
    cosine = 1.0 - rng.uniform(0.0, eps / 4, pairs)
    return Pool(size, shards, per_shard, spread, seed, points, origin, copy, cosine)


def _placed(origin: np.ndarray, size: int, per_shard: int, shards: int, rng) -> np.ndarray:
    """A slot for each original's copy: in another shard than the original's, drawn at random, among the slots
    that hold no original (the next shard with one free when the drawn one is full)."""
    taken = np.zeros(size, bool)
    taken[origin] = True
    free = [
        rng.permutation(np.flatnonzero(~taken[s * per_shard : (s + 1) * per_shard]) + s * per_shard).tolist()
        for s in range(shards)
    ]
    homes = (origin // per_shard).tolist()
    drawn = ((origin // per_shard + rng.integers(1, shards, size=len(origin))) % shards).tolist()
    copy = np.empty_like(origin)
    for i, (home, shard) in enumerate(zip(homes, drawn)):
        while not free[shard] or shard == home:
            shard = (shard + 1) % shards
            if shard == drawn[i]:
                raise SystemExit("no free slot left outside an original's shard: lower --copies")
        copy[i] = free[shard].pop()
    return copy


def near_copies(points: np.ndarray, cosines: np.ndarray, rng) -> np.ndarray:
    """Unit vectors at exactly ``cosines`` to ``points``, in a random direction orthogonal to each."""
    away = rng.standard_normal(points.shape)
    away = unit(away - (away * points).sum(1, keepdims=True) * points)
    return cosines[:, None] * points + np.sqrt(1.0 - cosines**2)[:, None] * away


@dataclass
class Truth:
    """What the pool holds, for checking the selection: every sample's score; each planted pair's two vectors as
    written (float16); the subset's global ids and vectors."""

    scores: np.ndarray
    origin16: np.ndarray
    copy16: np.ndarray
    subset_ids: np.ndarray
    subset16: np.ndarray
    subset_centres: int


def write_pool(pool: Pool, folder: Path, subset: int) -> Truth:
    """Write the pool's shards one at a time (memory: one shard, the planted pairs and the subset)."""
    count = len(pool.centres)
    origin16, copy16, copy_centre = plant(pool)
    subset_centres = min(count, max(1, round(subset * count / pool.size)))
    for kind in ("img_emb", "text_emb", "metadata"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    scores, ids, chosen16, total = np.zeros(pool.size), [], [], Stats()
    for shard in range(pool.shards):
        vectors, centre, score, similarity = pool.originals(shard)
        vectors16 = vectors.astype(np.float16)
        planted = np.flatnonzero(pool.copy // pool.per_shard == shard)
        rows = pool.copy[planted] - shard * pool.per_shard
        vectors16[rows], centre[rows] = copy16[planted], copy_centre[planted]
        scores[pool.rows(shard)] = score
        total = total + write_shard(folder, pool.name(shard), vectors16, score, similarity)
        inside = np.flatnonzero(centre < subset_centres)
        ids.append(inside + shard * pool.per_shard)
        chosen16.append(vectors16[inside])
    report = build_report(total, {**CONFIG, "seed": pool.seed})
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    return Truth(scores, origin16, copy16, np.concatenate(ids), np.concatenate(chosen16), subset_centres)


def plant(pool: Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each planted pair's original and copy as written (float16), and the original's centre. Made before any
    shard is written: a copy may land in a shard before its original's."""
    pairs, dim = len(pool.origin), pool.centres.shape[1]
    origin16, copy16 = np.zeros((pairs, dim), np.float16), np.zeros((pairs, dim), np.float16)
    copy_centre = np.zeros(pairs, np.int64)
    for shard in range(pool.shards):
        vectors, centre, _, _ = pool.originals(shard)
        planted = np.flatnonzero(pool.origin // pool.per_shard == shard)
        rows = pool.origin[planted] - shard * pool.per_shard
        rng = np.random.default_rng([pool.seed, 3, shard])
        copies = near_copies(vectors[rows].astype(np.float64), pool.cosine[planted], rng)
        origin16[planted], copy16[planted] = vectors[rows].astype(np.float16), copies.astype(np.float16)
        copy_centre[planted] = centre[rows]
    return origin16, copy16, copy_centre


def write_shard(folder: Path, name: str, vectors16: np.ndarray, scores: np.ndarray, similarities: np.ndarray) -> Stats:
    """One scored shard, every sample kept with its web caption, the stats file last (it marks the shard done)."""
    keys = [f"{name}_{row:07d}" for row in range(len(scores))]
    blobs = [JPEG + key.encode() for key in keys]
    with open(folder / f"{name}.tar", "wb") as handle, DeterministicTarWriter(handle) as tar:
        for key, blob in zip(keys, blobs):
            tar.add(f"{key}.jpg", blob)
    pq.write_table(rows_table(keys, blobs, scores, similarities), folder / f"{name}.parquet", compression="zstd")
    for kind in ("img_emb", "text_emb"):  # select only carries the text rows along: the image rows serve
        np.save(folder / kind / f"{kind}_{name}.npy", vectors16, allow_pickle=False)
    metadata = pa.table({"key": keys, "caption": keys, "url": pa.nulls(len(keys), pa.string())}, schema=METADATA_SCHEMA)
    pq.write_table(metadata, folder / "metadata" / f"metadata_{name}.parquet", compression="zstd")
    stats = shard_stats(name, scores, similarities)
    (folder / f"{name}_stats.json").write_bytes(stats.to_json(shard=name, error="", fingerprint=FINGERPRINT))
    return stats


def rows_table(keys: list[str], blobs: list[bytes], scores: np.ndarray, similarities: np.ndarray) -> pa.Table:
    """The parquet rows of kept samples whose one candidate is the web caption (its text: the key)."""
    n = len(keys)
    columns = {
        "key": keys,
        "status": ["kept"] * n,
        "caption": keys,
        "source": ["web"] * n,
        "score": scores,
        "web_text": keys,
        "web_score": scores,
        "synthetic_texts": [[]] * n,
        "synthetic_scores": [[]] * n,
        "similarity": similarities,
        "web_similarity": similarities,
        "synthetic_similarities": [[]] * n,
        "kept_texts": [[k] for k in keys],
        "image_ext": ["jpg"] * n,
        "members": [["jpg"]] * n,
        "media": ["image"] * n,
        "frames": [1] * n,
        "sha256": [hashlib.sha256(blob).hexdigest() for blob in blobs],
    }
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in ROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)


def shard_stats(name: str, scores: np.ndarray, similarities: np.ndarray) -> Stats:
    n = len(scores)

    def bins(values: np.ndarray) -> list[int]:
        return np.bincount(
            np.minimum((values * HISTOGRAM_BINS).astype(int), HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS
        ).tolist()

    per_shard = {name: {"input": n, "kept": n, "seconds": 0.0, "status": "ok"}}
    return Stats(
        shards=1,
        input=n,
        kept=n,
        kept_web=n,
        web_scores=bins(scores),
        web_similarities=bins((similarities + 1) / 2),
        per_shard=per_shard,
    )


# ---- the selections ----


def select(pool_dir: Path, out: Path, options: list[str], beam: list[str]) -> dict:
    """``capfilt select --threshold 0`` (every sample kept but duplicates) in a process of its own, measured."""
    shutil.rmtree(out, ignore_errors=True)
    before = load_average()
    command = [sys.executable, "-m", "capfilt", "select", str(pool_dir), "--output", str(out), "--threshold", "0"]
    wall, rss, _ = measured(command + options + (["--", *beam] if beam else []))
    return {"wall": wall, "cpu": LAST_CPU_SECONDS[0], "rss": rss, "load": (before, load_average())}


def kept_copies(out: Path, pool: Pool) -> tuple[np.ndarray, dict[str, int]]:
    """For every sample, the global id of the sample the selection kept in its place (-1: none), and the count
    of each status."""
    kept_copy, statuses = np.full(pool.size, -1, np.int64), {}
    for shard in range(pool.shards):
        table = pq.read_table(out / f"{pool.name(shard)}.parquet", columns=["key", "status", "duplicate_of"])
        for entry in pc.value_counts(table["status"]).to_pylist():
            statuses[entry["values"]] = statuses.get(entry["values"], 0) + entry["counts"]
        copies = table.filter(pc.equal(table["status"], "duplicate"))
        for key, of in zip(copies["key"].to_pylist(), copies["duplicate_of"].to_pylist()):
            kept_copy[pool.global_id(key)] = pool.global_id(of)
    return kept_copy, statuses


def ranks_before(scores: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether sample ``a`` ranks before ``b`` as select ranks them: higher score, then shard and key (id order)."""
    return (scores[a] > scores[b]) | ((scores[a] == scores[b]) & (a < b))


def planted_recall(pool: Pool, truth: Truth, kept_copy: np.ndarray, eps: float) -> dict:
    first = ranks_before(truth.scores, pool.origin, pool.copy)
    better, worse = np.where(first, pool.origin, pool.copy), np.where(first, pool.copy, pool.origin)
    cosines = (truth.origin16.astype(np.float32) * truth.copy16.astype(np.float32)).sum(1)
    return {
        "pairs": len(worse),
        "found": int((kept_copy[worse] == better).sum()),
        "elsewhere": int(((kept_copy[worse] >= 0) & (kept_copy[worse] != better)).sum()),
        "min_cosine": float(cosines.min()) if len(cosines) else math.nan,
        "under": int((cosines < np.float32(1.0 - eps)).sum()),
    }


def close_pairs(vectors16: np.ndarray, eps: float, block: int = 1024) -> np.ndarray:
    """Every pair ``(i, j)``, i < j, at cosine ≥ 1 − eps, by brute force (float32, as select compares them)."""
    x = vectors16.astype(np.float32)
    found = [np.zeros((0, 2), np.int64)]
    for start in range(0, len(x), block):
        i, j = np.nonzero(x[start : start + block] @ x[start:].T >= 1.0 - eps)
        keep = j > i
        found.append(np.stack([i[keep] + start, j[keep] + start], axis=1))
    return np.concatenate(found)


def components(count: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected groups of two or more among ``count`` items linked by ``pairs``."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs.tolist():
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in np.unique(pairs).tolist():
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def brute_force_recall(pool: Pool, truth: Truth, kept_copy: np.ndarray, eps: float) -> dict:
    """Over the subset: the groups brute force links, and how many of their samples beyond each group's best the
    selection marked as copies; ``outside``: subset samples marked as copies of a sample outside their group."""
    pairs = close_pairs(truth.subset16, eps)
    ids = truth.subset_ids
    partner = np.full(pool.size, -1, np.int64)
    partner[pool.origin], partner[pool.copy] = pool.copy, pool.origin
    planted = int((partner[ids[pairs[:, 0]]] == ids[pairs[:, 1]]).sum()) if len(pairs) else 0
    beyond, marked, group_of = 0, 0, {}
    for number, group in enumerate(components(len(ids), pairs)):
        members = ids[group]
        best = min(members.tolist(), key=lambda g: (-truth.scores[g], g))
        rest = members[members != best]
        beyond += len(rest)
        marked += int((kept_copy[rest] >= 0).sum())
        group_of.update(dict.fromkeys(members.tolist(), number))
    copies = ids[kept_copy[ids] >= 0].tolist()
    outside = sum(1 for g in copies if g not in group_of or group_of.get(int(kept_copy[g])) != group_of[g])
    return {
        "samples": len(ids),
        "pairs": len(pairs),
        "planted": planted,
        "beyond": beyond,
        "marked": marked,
        "outside": outside,
    }


# ---- one size, and the growth ----


def measure_size(args, size: int, root: Path) -> dict:
    pool = plan_pool(size, args.per_shard, args.dim, args.centres, args.spread, args.copies, args.eps, args.seed)
    folder = root / f"pool-{size}"
    started = time.monotonic()
    truth = write_pool(pool, folder, args.subset)
    written = time.monotonic() - started
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(
        f"pool of {size} samples in {pool.shards} shards of {pool.per_shard}: d={args.dim}, {args.centres} centres "
        f"(noise norm {args.spread}), {len(pool.origin)} planted copies, {cluster_count(size)} k-means clusters for "
        f"select; written in {written:.1f} s, {disk / 2**30:.2f} GiB",
        flush=True,
    )
    runs = rounds(args, folder, root)
    kept_copy, statuses = kept_copies(root / "out-dedup", pool)
    figures = {
        "size": size,
        **{f"{label}_{k}": median([r[k] for r in runs[label]]) for label in runs for k in ("wall", "cpu", "rss")},
        "statuses": statuses,
        "marked": int((kept_copy >= 0).sum()),
        "planted": planted_recall(pool, truth, kept_copy, args.eps),
        "brute": brute_force_recall(pool, truth, kept_copy, args.eps),
        "subset_centres": truth.subset_centres,
    }
    if not args.keep:
        for path in (folder, root / "out-plain", root / "out-dedup"):
            shutil.rmtree(path, ignore_errors=True)
    return figures


def rounds(args, folder: Path, root: Path) -> dict[str, list[dict]]:
    """Both selections, interleaved ``--repeat`` times so that load from other processes falls on both."""
    dedup = ["--dedup", "semantic", "--dedup-eps", str(args.eps)]
    runs: dict[str, list[dict]] = {"plain": [], "dedup": []}
    for round_ in range(args.repeat):
        for label, options in (("plain", []), ("dedup", dedup)):
            run = select(folder, root / f"out-{label}", options, args.beam_arg or [])
            runs[label].append(run)
            print(
                f"  round {round_ + 1}, select{' ' + ' '.join(options) if options else ''} (load "
                f"{run['load'][0]:.2f}->{run['load'][1]:.2f}): {run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU, "
                f"peak RSS {run['rss']:.0f} MiB",
                flush=True,
            )
    return runs


def report_size(f: dict, args) -> None:
    plain, dedup = f["plain_wall"], f["dedup_wall"]
    planted, brute = f["planted"], f["brute"]
    print(f"{f['size']} samples, median of {args.repeat}:")
    print(
        f"  select:                 {plain:.1f} s wall, {f['plain_cpu']:.1f} s CPU, peak RSS {f['plain_rss']:.0f} MiB"
    )
    print(
        f"  select --dedup semantic: {dedup:.1f} s wall, {f['dedup_cpu']:.1f} s CPU, peak RSS {f['dedup_rss']:.0f} MiB"
    )
    print(
        f"  deduplication's own cost: {dedup - plain:+.1f} s wall ({100 * (dedup / plain - 1):+.0f}%), "
        f"{f['dedup_cpu'] - f['plain_cpu']:+.1f} s CPU, {f['dedup_rss'] - f['plain_rss']:+.0f} MiB peak RSS"
    )
    print(f"  statuses: {', '.join(f'{k} {v}' for k, v in sorted(f['statuses'].items()))}")
    missed = planted["pairs"] - planted["found"] - planted["elsewhere"]
    print(
        f"  planted pairs: {planted['pairs']}, cosine ≥ {planted['min_cosine']:.4f} as written ({planted['under']} "
        f"under 1 − eps); the worse-ranked one marked a copy of the other: {planted['found']} "
        f"({_percent(planted['found'], planted['pairs'])}), of another sample: {planted['elsewhere']}; missed "
        f"{missed}{' (each straddles two clusters or two splits)' if not planted['under'] else ''}"
    )
    print(
        f"  brute force over {brute['samples']} samples ({f['subset_centres']} whole centres): {brute['pairs']} pairs "
        f"at cosine ≥ 1 − {args.eps} ({brute['planted']} planted); of the {brute['beyond']} samples beyond each "
        f"group's best, {brute['marked']} marked duplicate ({_percent(brute['marked'], brute['beyond'])}); "
        f"{brute['outside']} marked as copies of a sample outside their group"
    )
    print(
        f"  marked duplicate in the whole pool: {f['marked']} ({f['marked'] - planted['found']} beyond planted pairs)"
    )


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "n/a"


def report_growth(figures: list[dict]) -> None:
    first = figures[0]
    for f in figures[1:]:
        print(f"growth {first['size']} -> {f['size']} samples (x{f['size'] / first['size']:.1f}):")
        for label, name in (("plain", "select"), ("dedup", "select --dedup semantic")):
            ratios = {k: f[f"{label}_{k}"] / first[f"{label}_{k}"] for k in ("wall", "cpu", "rss")}
            print(f"  {name}: wall x{ratios['wall']:.2f}, CPU x{ratios['cpu']:.2f}, peak RSS x{ratios['rss']:.2f}")
        cost, first_cost = f["dedup_wall"] - f["plain_wall"], first["dedup_wall"] - first["plain_wall"]
        ratio = f"x{cost / first_cost:.2f}" if first_cost > 0 else "n/a (no cost at the smaller size)"
        print(f"  deduplication's own wall time: {first_cost:.1f} s -> {cost:.1f} s ({ratio})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="pool sizes, in samples")
    parser.add_argument("--per-shard", type=int, default=10_000, help="samples per shard (at least 2 shards)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension")
    parser.add_argument("--centres", type=int, default=1000, help="synthetic cluster centres on the sphere")
    parser.add_argument("--spread", type=float, default=1.0, help="norm of the noise around a centre (1: cos 0.71)")
    parser.add_argument("--copies", type=float, default=0.1, help="share of the pool that are planted copies")
    parser.add_argument(
        "--eps", type=float, default=FALLBACK_EPS, help="--dedup-eps: copies at cosine >= 1 - eps (default: a CLIP's)"
    )
    parser.add_argument("--subset", type=int, default=20_000, help="about this many samples checked by brute force")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds of both selections (medians)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where pools and outputs go (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="leave pools and outputs on disk")
    parser.add_argument("--beam-arg", action="append", help="a Beam flag for both selections (repeatable)")
    args = parser.parse_args(argv)
    if not 0 <= args.copies <= 0.5 or not 0 < args.eps < 1:
        parser.error("--copies must be in [0, 0.5] (each copy needs an original) and --eps in (0, 1)")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="capfilt-bench-dedup-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"{usable_cores()} usable cores, load {load_average():.2f}; pools and outputs in {root}")
    figures = []
    for size in args.sizes:
        figures.append(measure_size(args, size, root))
        report_size(figures[-1], args)
    report_growth(figures)
    if not args.keep and not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Duplicates across the pool for ``capfilt select --dedup``: groups of copies found as Beam work, and in each group
the copy with the best chosen score kept (ties to the smallest shard and key); the others are duplicates of it.

``exact``: the samples whose media bytes have the same sha256 form a group (a GroupByKey on the hash).

``semantic`` (SemDeDup, Abbas et al. 2023): spherical k-means over the image embeddings the scored run wrote,
each Lloyd iteration a Beam combine of per-shard sums, seeded by k-means++ on a seeded sample of the pool; then
each sample goes to its nearest centroid, and only inside a cluster are cosines compared. Groups are stars, not
connected sets, so they cannot chain (A near B and B near C put no A beside a C far from it): the cluster's
samples are taken best-ranked first, and one at cosine ≥ 1 − ε to a sample already kept is a duplicate of the
best-ranked such one; any other is kept. Every duplicate is then that close to the sample its ``duplicate_of``
names, which a user can check. A cluster over ``MAX_CLUSTER`` samples is split by hyperplanes through its
centroid (a copy lies on the same side of each as its original, but for copies close to a plane), so no worker
holds more than a split cluster. Copies that fall into two clusters or two splits are the method's known
misses. The shuffle that brings a cluster together carries references to blocks of vectors each shard wrote
once (``spilled_clusters``), not the vectors.

Sums are exact (embeddings are float16; scaled by 2**24 they are integers, summed as int64), so the centroids,
and everything after them, do not depend on how the runner bundled or merged the work.
"""

from __future__ import annotations

import hashlib
import io
import math

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import AsSingleton

from ...models.similarity import embedding_checkpoint
from .. import storage
from ..shard.embeddings import embedding_paths
from .cut import selectable_rows

MODES = ("exact", "semantic")
CLUSTER_TARGET = 1000  # samples per cluster, on average: k = pool / CLUSTER_TARGET
MAX_CLUSTER = 4096  # a cluster over this is split (its cosine matrix is MAX_CLUSTER² floats: 64 MiB)
COSINE_FLOATS = MAX_CLUSTER * MAX_CLUSTER  # the cosines held at once, a block of rows at a time
MAX_CENTROIDS = 1000  # beyond this many, a larger pool makes larger clusters, which are split
SAMPLE_SIZE = 20_000  # k-means++ runs on a seeded sample of the pool this large (~20 per centroid)
LLOYD_ITERATIONS = 8
FIXED_POINT = float(1 << 24)  # float16 values times this are integers


# ε by the model that made the image embeddings: ``similarity.model``, or with ``itc`` the filter whose own
# contrastive head it is. The demo's are measured (``bench/dedup_eps.py`` and ``eval`` of injected copies, README
# "Deduplication"): the ε that finds ≥ 95% of copies with the fewest merges of other scenes, which their tiny
# towers put about as close as a copy. The demo SigLIP (``embedded:siglip``) separates scenes best: at 0.002 it
# found 0.932-0.984 of injected copies on eight demo worlds (``bench/dedup_worlds.py``) and never lost a description
# (its merges joined renders of one caption a few pixels apart); 0.0025 and 0.003 lose some. The demo CLIP and BLIP
# ITC head at 0.001: with ``embedded:clip``, 0.0007 merges one scene fewer on the seed-0 demo world but as many on
# seed 1, and finds only 0.919 of ``bench/dedup_eps.py``'s re-encoded and resized copies; larger ε merge more.
# With the ITC head no ε finds 95% of injected copies on both worlds (0.946 and 0.923 at 0.001, 0.962 and 0.946
# at 0.0012 with more scenes merged), since a copy further than ε from the kept one is no longer reached through
# another. A real CLIP or SigLIP checkpoint gets 0.01, the ε NeMo Curator's semantic dedup configuration
# extracts at.
DEFAULT_EPS = {"embedded:clip": 0.001, "embedded:itm": 0.001, "embedded:siglip": 0.002}
FALLBACK_EPS = 0.01


def default_eps(similarity_model: str, filter_model: str) -> float:
    return DEFAULT_EPS.get(embedding_checkpoint(similarity_model, filter_model), FALLBACK_EPS)


def _rank(score: float, shard: str, key: str) -> tuple:
    """Smaller is better: the higher score, then the smaller shard name, then the smaller key."""
    return (-score, shard, key)


def duplicates_of_group(members: list[tuple]) -> list[tuple[str, tuple[str, str]]]:
    """For one group of ``(rank, shard, key)``: ``(shard, (key, kept))`` for every member but the best ranked,
    ``kept`` naming the one that stays as ``SHARD/KEY``."""
    members = sorted(members)
    _, shard, key = members[0]
    return [(s, (k, f"{shard}/{key}")) for _, s, k in members[1:]]


# ---- exact ----


def _hashed(name: str, config) -> list[tuple[str, tuple]]:
    rows, best, _ = selectable_rows(config, name, ["sha256"])
    return [
        (sha, (_rank(float(score), name, key), name, key))
        for key, sha, score in zip(rows["key"], rows["sha256"], best, strict=True)
        if sha
    ]


class ExactDuplicates(beam.PTransform):
    """Shard names in; ``(shard, (key, kept))`` out for every sample whose media bytes an earlier-ranked sample
    of the pool also has."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def expand(self, names):
        return (
            names
            | "ReadHashes" >> beam.FlatMap(_hashed, self.config)
            | "GroupByHash" >> beam.GroupByKey()
            | "KeepBest" >> beam.FlatMap(lambda item: duplicates_of_group(list(item[1])))
        )


# ---- semantic ----


class Vectors:
    """One shard's selectable samples: their keys, best scores and image embeddings (float16 rows, as the scored
    run wrote them). Every stage reads its shard's anew (``read_vectors``) rather than the pipeline holding a
    collection of every shard's vectors between stages."""

    def __init__(self, shard: str, keys: list[str], best: np.ndarray, embeddings: np.ndarray):
        self.shard, self.keys, self.best, self.embeddings = shard, keys, best, embeddings

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def exact(self) -> np.ndarray:
        """The embeddings as int64 fixed point (exact: they are float16)."""
        return (self.embeddings.astype(np.float64) * FIXED_POINT).astype(np.int64)

    @property
    def unit(self) -> np.ndarray:
        return self.embeddings.astype(np.float32)


def read_vectors(name: str, config) -> Vectors:
    rows, best, kept_index = selectable_rows(config, name, [])
    if not len(best):
        return Vectors(name, [], best, np.zeros((0, 0), np.float16))
    data = storage.read_bytes(embedding_paths(config.scored_dir, name)["img_emb"])
    embeddings = np.load(io.BytesIO(data)).astype(np.float16)
    return Vectors(name, rows["key"], best, embeddings[kept_index])


def _priority(seed: int, shard: str, key: str) -> int:
    """A seeded pseudo-random order of the pool, the same on any worker: which samples seed k-means."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{shard}\0{key}".encode()).digest()[:8], "big")


def _prioritised(vectors: Vectors, seed: int) -> list[tuple]:
    """The shard's ``SAMPLE_SIZE`` first samples in the seeded order, ``(priority, shard, key, vector)``: only
    they can be among the pool's first."""
    ordered = sorted((_priority(seed, vectors.shard, key), i) for i, key in enumerate(vectors.keys))
    return [(p, vectors.shard, vectors.keys[i], vectors.embeddings[i]) for p, i in ordered[:SAMPLE_SIZE]]


class _SeedSample(beam.CombineFn):
    """The pool's ``SAMPLE_SIZE`` first samples in the seeded order, from each shard's (``_prioritised``)."""

    def create_accumulator(self):
        return []

    def add_input(self, sample, shard_sample):
        return sorted(sample + shard_sample, key=lambda s: s[:3])[:SAMPLE_SIZE]

    def merge_accumulators(self, samples):
        return sorted((s for sample in samples for s in sample), key=lambda s: s[:3])[:SAMPLE_SIZE]

    def extract_output(self, sample):
        return sample


def cluster_count(pool: int) -> int:
    return max(1, min(MAX_CENTROIDS, math.ceil(pool / CLUSTER_TARGET)))


def kmeans_plus_plus(sample: list[tuple], pool: int, seed: int) -> np.ndarray:
    """k-means++ (Arthur and Vassilvitskii 2007) on the seeded ``sample`` (``(priority, shard, key, vector)``):
    ``cluster_count(pool)`` centroids, unit vectors, float64."""
    if not sample:
        return np.zeros((0, 0))
    points = np.stack([v for *_, v in sorted(sample, key=lambda s: s[:3])]).astype(np.float64)
    k = min(cluster_count(pool), len(points))
    rng = np.random.default_rng(seed)
    chosen = [0]
    distance = 1.0 - points @ points[0]
    for _ in range(1, k):
        weights = np.clip(distance, 0, None)
        total = weights.sum()
        nxt = int(rng.choice(len(points), p=weights / total)) if total > 0 else int(rng.integers(len(points)))
        chosen.append(nxt)
        distance = np.minimum(distance, 1.0 - points @ points[nxt])
    return points[chosen]


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of each row's nearest centroid by cosine (the first of equals)."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(vectors.astype(np.float64) @ centroids.T, axis=1)


def cluster_sums(vectors: Vectors, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per centroid, the exact sum of the shard's vectors nearest to it and their count."""
    k, d = centroids.shape
    sums, counts = np.zeros((k, d), np.int64), np.zeros(k, np.int64)
    if len(vectors):
        assigned = nearest(vectors.unit, centroids)
        np.add.at(sums, assigned, vectors.exact)
        counts = np.bincount(assigned, minlength=k).astype(np.int64)
    return sums, counts


class _SumClusters(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, total, item):
        return item if total is None else (total[0] + item[0], total[1] + item[1])

    def merge_accumulators(self, totals):
        result = None
        for total in totals:
            if total is not None:
                result = self.add_input(result, total)
        return result

    def extract_output(self, total):
        return total


def moved_centroids(totals, centroids: np.ndarray) -> np.ndarray:
    """Each centroid moved to the normalised mean of its members (spherical k-means); one without members stays."""
    if totals is None:
        return centroids
    sums, counts = totals
    means = sums.astype(np.float64)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return np.where((counts[:, None] > 0) & (norms > 0), means / np.where(norms > 0, norms, 1), centroids)


def splitting_planes(seed: int, dimension: int, count: int) -> np.ndarray:
    return np.random.default_rng([seed, 1]).standard_normal((count, dimension))


def split_bits(size: int) -> int:
    """How many hyperplanes halve a cluster of ``size`` down to ``MAX_CLUSTER`` (0: it is small enough)."""
    return 0 if size <= MAX_CLUSTER else math.ceil(math.log2(size / MAX_CLUSTER))


def cluster_splits(vectors: Vectors, centroids: np.ndarray, counts: np.ndarray, seed: int) -> np.ndarray:
    """Each of the shard's samples' ``(cluster, split)``, as rows of an int64 array: its nearest centroid, and
    which side of its cluster's splitting planes it lies on (0 where the cluster needs no split)."""
    unit = vectors.unit
    assigned = nearest(unit, centroids)
    bits = np.array([split_bits(int(c)) for c in counts])[assigned]
    planes = splitting_planes(seed, centroids.shape[1], int(bits.max()))
    sides = (unit.astype(np.float64) - centroids[assigned]) @ planes.T > 0  # (samples, planes)
    used = np.arange(planes.shape[0]) < bits[:, None]  # a row uses as many planes as its cluster needs
    splits = (sides & used) @ (1 << np.arange(planes.shape[0], dtype=np.int64)) if planes.shape[0] else bits * 0
    return np.stack([assigned, np.asarray(splits, dtype=np.int64)], axis=1)


# The shuffle carries where each (split) cluster's vectors are, not the vectors: each shard's are written once,
# cluster by cluster, to a file under the output's temporary folder (which the report removes), and the linking
# stage reads the blocks of one cluster. A runner whose shuffle lives in its own process (the local ones) then
# holds a few numbers per cluster and shard rather than every sample's vector, and no worker more than one
# (split) cluster. A block is the rows' float16 vectors, float64 best scores, int32 key lengths, then the keys.


def spill_path(output_dir: str, shard: str) -> str:
    digest = hashlib.sha256(shard.encode()).hexdigest()[:20]  # a flat, safe name whatever the shard's
    return storage.join(storage.join(output_dir, storage.TEMP_DIR), f"dedup-vectors.{digest}")


def spilled_clusters(vectors: Vectors, centroids: np.ndarray, counts: np.ndarray, seed: int, output_dir: str):
    """Write the shard's selectable samples grouped by (split) cluster to ``spill_path`` and yield
    ``((cluster, split), (shard, path, offset, rows, dimension, size))`` for each block of it."""
    if not len(vectors):
        return
    places = cluster_splits(vectors, centroids, counts, seed)
    order = np.lexsort((np.arange(len(vectors)), places[:, 1], places[:, 0]))
    path = spill_path(output_dir, vectors.shard)
    blocks, refs, offset = [], [], 0
    starts = np.flatnonzero(np.r_[True, np.any(np.diff(places[order], axis=0) != 0, axis=1)])
    for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[start:stop]
        keys = [vectors.keys[i].encode() for i in rows]
        block = b"".join(
            [
                np.ascontiguousarray(vectors.embeddings[rows], np.float16).tobytes(),
                np.asarray(vectors.best[rows], np.float64).tobytes(),
                np.array([len(k) for k in keys], np.int32).tobytes(),
                *keys,
            ]
        )
        cluster, split = (int(v) for v in places[rows[0]])
        refs.append(
            ((cluster, split), (vectors.shard, path, offset, len(rows), vectors.embeddings.shape[1], len(block)))
        )
        blocks.append(block)
        offset += len(block)
    storage.write_bytes(path, b"".join(blocks), output_dir)
    yield from refs


def read_block(ref: tuple) -> list[tuple]:
    """The ``(rank, shard, key, vector)`` of one block ``spilled_clusters`` wrote."""
    shard, path, offset, rows, dimension, size = ref
    with storage.open_raw(path) as handle:
        handle.seek(offset)
        data = handle.read(size)
    vectors = np.frombuffer(data, np.float16, rows * dimension).reshape(rows, dimension)
    at = rows * dimension * 2
    best = np.frombuffer(data, np.float64, rows, at)
    lengths = np.frombuffer(data, np.int32, rows, at + rows * 8)
    ends = at + rows * 12 + np.cumsum(lengths)
    keys = [data[end - length : end].decode() for end, length in zip(ends.tolist(), lengths.tolist(), strict=True)]
    return [(_rank(float(b), shard, k), shard, k, v) for b, k, v in zip(best, keys, vectors, strict=True)]


def star_blocks(refs, eps: float) -> list[tuple[str, tuple[str, str]]]:
    """``star_duplicates`` of one (split) cluster, read from its blocks in every shard."""
    return star_duplicates([member for ref in refs for member in read_block(ref)], eps)


def star_duplicates(members: list[tuple], eps: float) -> list[tuple[str, tuple[str, str]]]:
    """Within one (split) cluster of ``(rank, shard, key, vector)``, best-ranked first: a sample at cosine
    ≥ 1 − ``eps`` to an already kept one is a duplicate of the best-ranked such sample, any other is kept.
    ``(shard, (key, kept))`` for each duplicate."""
    members = sorted(members, key=lambda m: m[:3])
    # Identical vectors (a placeholder image a million times) share one fate and are compared once: hyperplanes
    # cannot split them, so only their distinct vectors may go through the cosine matrix, each standing for its
    # best-ranked member. A later one is a duplicate of that member when it is kept, else of the same kept sample.
    vectors = np.stack([m[3] for m in members])
    distinct, first, inverse = np.unique(vectors, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # the distinct vectors in the rank of the member each stands for
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    centres = star_centres(distinct[order].astype(np.float32), eps)
    standing = first[order]  # the member each distinct vector, in that order, stands for
    out = []
    for i, d in enumerate(inverse.reshape(-1)):
        centre = int(standing[centres[place[d]]])  # the kept member: its own vector's or the one it is near
        if centre != i:
            _, shard, key, _ = members[i]
            out.append((shard, (key, f"{members[centre][1]}/{members[centre][2]}")))
    return out


def star_centres(unit: np.ndarray, eps: float) -> np.ndarray:
    """For rows in rank order, the index of the best-ranked earlier kept row at cosine ≥ 1 − ``eps`` to each
    row, or the row's own index where there is none (it is kept)."""
    centre = np.arange(len(unit))
    kept = np.zeros(len(unit), bool)
    # A row's fate depends only on rows before it, so the cosine matrix goes a block of rows at a time, each
    # against the rows up to its end: never more than ``COSINE_FLOATS`` cosines at once.
    block = max(1, COSINE_FLOATS // max(1, len(unit)))
    for start in range(0, len(unit), block):
        stop = min(len(unit), start + block)
        close = unit[start:stop] @ unit[:stop].T >= 1.0 - eps
        close &= np.arange(stop)[None, :] < np.arange(start, stop)[:, None]  # only earlier rows
        near = close.any(axis=1)
        kept[start:stop] = ~near  # near no earlier row at all: kept, whatever became of the others
        for row in np.flatnonzero(near):  # in rank order, so every earlier row's fate is known
            i = start + int(row)
            hits = np.flatnonzero(close[row, :i] & kept[:i])
            if len(hits):
                centre[i] = hits[0]  # the smallest index is the best rank
            else:
                kept[i] = True
    return centre


class SemanticDuplicates(beam.PTransform):
    """Shard names in; ``(shard, (key, kept))`` out for every sample whose image embedding is at cosine
    ≥ 1 − ``eps`` to that of ``kept``, a better-ranked sample of its cluster that stays (``star_duplicates``)."""

    def __init__(self, config, eps: float, output_dir: str, seed: int = 0):
        super().__init__()
        self.config, self.eps, self.output_dir, self.seed = config, eps, output_dir, seed

    def expand(self, names):
        seed, config = self.seed, self.config

        def per_shard(function):
            """``function`` of a shard's vectors, read where the stage runs (see ``Vectors``)."""
            return lambda name, *side: function(read_vectors(name, config), *side)

        pool = names | "CountPool" >> beam.Map(per_shard(len)) | "SumPool" >> beam.CombineGlobally(sum)
        sample = (
            names
            | "Prioritise" >> beam.Map(per_shard(_prioritised), seed)
            | "SeedSample" >> beam.CombineGlobally(_SeedSample())
        )
        centroids = sample | "KMeans++" >> beam.Map(kmeans_plus_plus, AsSingleton(pool), seed)
        for i in range(LLOYD_ITERATIONS):
            totals = (
                names
                | f"Assign{i}" >> beam.Map(per_shard(cluster_sums), AsSingleton(centroids))
                | f"Sum{i}" >> beam.CombineGlobally(_SumClusters())
            )
            centroids = totals | f"Move{i}" >> beam.Map(moved_centroids, AsSingleton(centroids))
        counts = (
            names
            | "AssignFinal" >> beam.Map(per_shard(cluster_sums), AsSingleton(centroids))
            | "SumFinal" >> beam.CombineGlobally(_SumClusters())
            | "Sizes" >> beam.Map(lambda totals: totals[1] if totals is not None else np.zeros(0, np.int64))
        )
        spilled = per_shard(spilled_clusters)
        return (
            names
            | "SpillByCluster"
            >> beam.FlatMap(spilled, AsSingleton(centroids), AsSingleton(counts), seed, self.output_dir)
            | "GroupByCluster" >> beam.GroupByKey()
            | "StarsInCluster" >> beam.FlatMap(lambda item, eps: star_blocks(item[1], eps), self.eps)
        )

"""Where a selection cuts the pool: a fixed threshold, or for ``--keep-fraction`` the exact score of the k-th
best sample over every shard.

The quantile is exact, not approximate: a radix select over integer keys that sort as the float64 scores do,
16 bits per pass, each pass a Beam combine of per-shard digit histograms narrowed by the previous pass (a side
input). No process holds more than one shard's scores and one histogram, four passes find the 64-bit key, and
the result does not depend on how the runner bundled or merged anything, so reruns cut in the same place.
Samples tied at the cut are taken in shard-name then row order until exactly k are kept.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.pvalue import AsList, AsSingleton

from .. import storage
from ..shard.writer import output_paths

DIGIT_BITS = 16
PASSES = 64 // DIGIT_BITS
DIGIT_MASK = (1 << DIGIT_BITS) - 1
SIGN = np.uint64(1 << 63)


def best_score(row: dict, score: str) -> float | None:
    """A parquet row's selection score: its best candidate's ``score`` (``itm`` or ``similarity``), the one the
    policy compares with the threshold; None when no candidate has one."""
    if score == "similarity":
        values = [row["web_similarity"], *(row["synthetic_similarities"] or [])]
    else:
        values = [row["web_score"], *(row["synthetic_scores"] or [])]
    values = [v for v in values if v is not None]
    return max(values) if values else None


# The parquet columns of the web caption's and the synthetic captions' scores, by ``--score``.
SCORE_COLUMNS = {"itm": ("web_score", "synthetic_scores"), "similarity": ("web_similarity", "synthetic_similarities")}


def selectable_rows(config, name: str, columns: list[str]) -> tuple[dict[str, list], np.ndarray, np.ndarray]:
    """The shard's rows a selection chooses among (kept in the scored folder, with a score): ``columns`` of them
    (``key`` always), their best scores (``best_score``'s, computed on the columns) and their index among the
    kept rows (their row in the embedding files)."""
    web, synthetic = SCORE_COLUMNS[config.score]
    with storage.open_raw(output_paths(config.scored_dir, name)["parquet"]) as handle:
        table = pq.read_table(handle, columns=sorted({"key", "status", web, synthetic, *columns}))
    best = np.array(table[web].to_numpy(zero_copy_only=False), dtype=np.float64)  # a copy; nulls are NaN
    lists = table[synthetic].combine_chunks()
    flat = np.asarray(pc.list_flatten(lists).to_numpy(zero_copy_only=False), dtype=np.float64)
    np.fmax.at(best, pc.list_parent_indices(lists).to_numpy(), flat)  # fmax: NaN never wins
    kept = np.asarray(pc.equal(table["status"], "kept").to_numpy(zero_copy_only=False), dtype=bool)
    selectable = kept & ~np.isnan(best)
    picked = {c: table[c].filter(pa.array(selectable)).to_pylist() for c in ["key", *columns]}
    return picked, best[selectable], (np.cumsum(kept) - 1)[selectable]


def order_keys(scores) -> np.ndarray:
    """uint64 keys that sort as the float64 ``scores`` do (IEEE 754: negative numbers have every bit flipped,
    the others only the sign bit)."""
    bits = np.ascontiguousarray(scores, dtype=np.float64).view(np.uint64)
    return np.where(bits >> np.uint64(63) == 1, ~bits, bits | SIGN)


def key_score(key: int) -> float:
    """The float64 whose ``order_keys`` key is ``key``."""
    bits = np.uint64(key)
    raw = bits ^ SIGN if bits & SIGN else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


@dataclass(frozen=True)
class Cut:
    """Keep a selectable sample whose best score is over ``threshold``; at exactly ``threshold``, keep it when
    ``tie_quota`` is None, else keep the first ``tie_quota[shard]`` such samples of that shard.

    ``pool`` (selectable samples) and ``target`` (the k of a keep fraction) are recorded in the report.
    """

    threshold: float
    tie_quota: dict[str, int] | None = None
    pool: int | None = None
    target: int | None = None
    key: int | None = None  # ``order_keys`` of ``threshold`` when ties are counted, so samples compare exactly


@dataclass(frozen=True)
class Search:
    """The radix select between passes: the key's top ``DIGIT_BITS * level`` bits are ``prefix``; the wanted
    sample is the ``rank``-th highest (1-based) of the keys sharing them, ``above`` keys are higher."""

    level: int
    prefix: int
    rank: int
    above: int
    pool: int
    target: int


def digit_histogram(item: tuple[str, np.ndarray], search: Search | None) -> dict[int, int]:
    """Counts of the next digit among one shard's keys that share the prefix found so far."""
    keys = item[1]
    level = 0 if search is None else search.level
    if level:
        keep = (keys >> np.uint64(64 - DIGIT_BITS * level)) == np.uint64(search.prefix >> (64 - DIGIT_BITS * level))
        keys = keys[keep]
    digits = (keys >> np.uint64(64 - DIGIT_BITS * (level + 1))) & np.uint64(DIGIT_MASK)
    values, counts = np.unique(digits, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def add_histograms(histograms) -> dict[int, int]:
    total = Counter()
    for histogram in histograms:
        total.update(histogram)
    return dict(total)


def narrow(histogram: dict[int, int], search: Search | None, keep_fraction: float) -> Search:
    """The next pass's search: the digit under which the wanted rank falls. The first pass sees the whole pool
    and sets the target, ``ceil(keep_fraction * pool)``."""
    if search is None:
        pool = sum(histogram.values())
        target = math.ceil(keep_fraction * pool - 1e-9)  # 0.3 * 10 is 3.0000000000000004 in floating point
        search = Search(level=0, prefix=0, rank=target, above=0, pool=pool, target=target)
    if search.rank == 0:
        return Search(search.level + 1, search.prefix, 0, search.above, search.pool, search.target)
    seen = 0
    for digit in sorted(histogram, reverse=True):
        if seen + histogram[digit] >= search.rank:
            prefix = search.prefix | (digit << (64 - DIGIT_BITS * (search.level + 1)))
            return Search(search.level + 1, prefix, search.rank - seen, search.above + seen, search.pool, search.target)
        seen += histogram[digit]
    raise AssertionError(f"rank {search.rank} beyond the {seen} keys of pass {search.level}")


def ties(item: tuple[str, np.ndarray], search: Search) -> tuple[str, int]:
    """How many of a shard's keys are exactly the cut's."""
    return item[0], int(np.count_nonzero(item[1] == np.uint64(search.prefix)))


def finish(search: Search, tied: list[tuple[str, int]]) -> Cut:
    """The cut: every key above the found one is kept, and ``search.rank`` of those equal to it, taken in
    shard-name order."""
    if search.target == 0:
        return Cut(threshold=math.inf, tie_quota={}, pool=search.pool, target=0, key=int(order_keys([math.inf])[0]))
    quota, left = {}, search.rank
    for name, count in sorted(tied):
        if left and count:
            quota[name] = min(count, left)
            left -= quota[name]
    return Cut(key_score(search.prefix), quota, search.pool, search.target, key=search.prefix)


class GlobalCut(beam.PTransform):
    """``(shard name, order_keys of its selectable samples)`` in; one ``Cut`` keeping ``keep_fraction`` of them
    (rounded up) out."""

    def __init__(self, keep_fraction: float):
        super().__init__()
        self.keep_fraction = keep_fraction

    def expand(self, keys):
        search = None
        for level in range(PASSES):
            previous = [AsSingleton(search)] if search is not None else [None]
            histogram = (
                keys
                | f"Digits{level}" >> beam.Map(digit_histogram, *previous)
                | f"SumDigits{level}" >> beam.CombineGlobally(add_histograms)
            )
            search = histogram | f"Narrow{level}" >> beam.Map(narrow, *previous, self.keep_fraction)
        tied = keys | "CountTies" >> beam.Map(ties, AsSingleton(search)) | "WithTies" >> beam.Filter(lambda t: t[1])
        return search | "Cut" >> beam.Map(finish, AsList(tied))

"""The global cut of --keep-fraction against a reference written with a plain sort."""

import math
import pickle
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from capfilt.pipeline.select.cut import GlobalCut, key_score, order_keys


def reference(shards: dict[str, list[float]], fraction: float) -> set[tuple[str, int]]:
    """The (shard, index) of the kept samples: the top ceil(F * N) by score, ties broken by shard then index."""
    ranked = sorted(((-s, name, i) for name, scores in shards.items() for i, s in enumerate(scores)))
    k = math.ceil(round(fraction * len(ranked), 9))
    return {(name, i) for _, name, i in ranked[:k]}


def apply(cut, shards: dict[str, list[float]]) -> set[tuple[str, int]]:
    kept = set()
    for name, scores in shards.items():
        ties = 0
        for i, score in enumerate(scores):
            if score > cut.threshold:
                kept.add((name, i))
            elif score == cut.threshold and ties < cut.tie_quota.get(name, 0):
                kept.add((name, i))
                ties += 1
    return kept


def global_cut(shards: dict[str, list[float]], fraction: float, tmp_path):
    """The one Cut the transform makes, passed out of the pipeline through a file."""
    out = tmp_path / "cut.pickle"
    with beam.Pipeline("FnApiRunner") as p:
        items = p | beam.Create([(n, order_keys(np.array(s, dtype=np.float64))) for n, s in shards.items()])
        cuts = items | GlobalCut(fraction)
        assert_that(cuts | beam.Map(lambda cut: out.write_bytes(pickle.dumps(cut)) and 1), equal_to([1]))
    return pickle.loads(out.read_bytes())


def test_order_keys_sort_as_the_floats_and_map_back():
    values = np.array([-1.0, -0.3, -1e-300, 0.0, 5e-324, 0.28, 0.5, 0.9999999, 1.0])
    keys = order_keys(values)
    assert [int(k) for k in keys] == sorted(int(k) for k in keys)
    assert [key_score(int(k)) for k in keys] == values.tolist()


@pytest.mark.parametrize("fraction", [0.3, 0.05, 0.5, 1.0])
def test_the_cut_keeps_exactly_the_top_fraction_of_shards_of_different_sizes(fraction, tmp_path):
    rng = random.Random(7)
    sizes = {"00000": 37, "00001": 3, "00002": 0, "00003": 120, "00004": 11}
    # Scores as a filter gives them: many saturated at 1.0, a coarse grid (ties), and negative cosines.
    grid = [1.0, 1.0, 0.5, -0.25]
    shards = {
        name: [rng.choice(grid) if rng.random() < 0.4 else rng.uniform(-1, 1) for _ in range(size)]
        for name, size in sizes.items()
    }
    cut = global_cut(shards, fraction, tmp_path)
    expected = reference(shards, fraction)
    assert apply(cut, shards) == expected
    assert cut.pool == sum(sizes.values()) and cut.target == len(expected)


def test_every_score_equal_keeps_the_first_in_shard_order(tmp_path):
    shards = {"b": [0.9] * 4, "a": [0.9] * 3}
    cut = global_cut(shards, 0.5, tmp_path)
    assert cut.threshold == 0.9 and cut.target == 4
    assert cut.tie_quota == {"a": 3, "b": 1}

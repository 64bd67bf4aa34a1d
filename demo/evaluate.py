"""Caption quality against the demo world's ground truth, and BLIP's Table 1 ablation, from a capfilt output.

Works on the per-shard parquet rows (one per input sample) that a run writes; the ground truth is the
``gt_caption`` in each input sample's json, which only demo shards carry. The row-level functions
(``evaluate_rows``, ``ablation_rows``) take plain dicts with the parquet columns, so the demo-model training
script can score models in memory the same way.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter

from ..pipeline.errors import UsageError
from ..pipeline.policy import choose
from .world import DUPLICATE_KINDS, NOISE_KINDS, WORLDS, normalise

ABLATION_ROWS = ("none", "filter", "captioner", "capfilt")


def read_rows(output_dir: str) -> list[dict]:
    """All parquet rows of ``output_dir`` as dicts, shards in name order and rows in file order.

    Args:
        output_dir: a local capfilt output directory.
    """
    return [row for _, row in read_shard_rows(output_dir)]


def read_shard_rows(output_dir: str) -> list[tuple[str, dict]]:
    """``read_rows`` with each row's shard name (``00001`` for ``00001.parquet``), as ``duplicate_of`` names it."""
    import pyarrow.parquet as pq

    paths = sorted(glob.glob(os.path.join(output_dir, "*.parquet")))
    if not paths:
        raise FileNotFoundError(f"no *.parquet files in {output_dir}")
    rows: list[tuple[str, dict]] = []
    for path in paths:
        shard = os.path.basename(path)[: -len(".parquet")]
        rows.extend((shard, row) for row in pq.read_table(path).to_pylist())
    return rows


def read_filter_config(output_dir: str) -> tuple[float, float]:
    """The run's ``(threshold, web_margin)`` from ``report.json`` in ``output_dir``."""
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as handle:
        config = json.load(handle)["config"]["filter"]
    return float(config["threshold"]), float(config.get("web_margin", 0.0))


def ground_truth(row: dict) -> tuple[str | None, str]:
    """The normalised ground-truth caption and noise kind of a row (None, "unknown" without demo json)."""
    try:
        meta = json.loads(row.get("json") or "")
        return normalise(meta["gt_caption"]), str(meta.get("noise", "unknown"))
    except (ValueError, KeyError, TypeError):
        return None, "unknown"


def run_world(rows: list[dict]) -> str:
    """The demo world the run's input came from, from the rows' json; ``UsageError`` when the rows carry no
    ground truth (not demo output) or mix worlds."""
    if not any(ground_truth(row)[0] is not None for row in rows):
        raise UsageError("no demo ground truth (gt_caption) in the run's rows; eval measures demo-world output only")
    worlds = {_world(row) for row in rows if ground_truth(row)[0] is not None}
    if len(worlds) != 1 or not worlds <= set(WORLDS):
        raise UsageError(f"the run's rows come from demo worlds {sorted(worlds)}; eval needs one of {WORLDS}")
    return worlds.pop()


def _world(row: dict) -> str:
    return str(json.loads(row["json"]).get("world", "default"))


def _correct(text: str | None, truth: str | None) -> bool:
    return text is not None and truth is not None and normalise(text) == truth


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def evaluate_rows(rows: list[dict]) -> dict:
    """Quality figures of a run's decisions (``status``, ``caption``, ``source``) against ground truth.

    Args:
        rows: parquet rows as dicts; ``json`` must hold the demo sample's json with ``gt_caption``.

    Returns:
        ``input``, ``kept``, ``kept_correct``, ``kept_accuracy`` (correct kept / kept), ``yield``
        (kept / input), ``clean_yield`` (correct kept / input), ``web_accuracy`` (correct web captions /
        input) and ``per_noise``: for each noise kind ``count``, ``kept``, ``kept_correct``, ``kept_web``,
        ``kept_synthetic``.
    """
    per_noise: dict[str, dict[str, int]] = {}
    kept = kept_correct = web_correct = 0
    for row in rows:
        truth, kind = ground_truth(row)
        counts = per_noise.setdefault(
            kind, {"count": 0, "kept": 0, "kept_correct": 0, "kept_web": 0, "kept_synthetic": 0}
        )
        counts["count"] += 1
        web_correct += _correct(row.get("web_text"), truth)
        if row.get("status") != "kept":
            continue
        good = _correct(row.get("caption"), truth)
        kept += 1
        kept_correct += good
        counts["kept"] += 1
        counts["kept_correct"] += good
        if row.get("source") in ("web", "synthetic"):
            counts[f"kept_{row['source']}"] += 1
    total = len(rows)
    order = {kind: i for i, kind in enumerate(NOISE_KINDS)}
    return {
        "input": total,
        "kept": kept,
        "kept_correct": kept_correct,
        "kept_accuracy": _ratio(kept_correct, kept),
        "yield": _ratio(kept, total),
        "clean_yield": _ratio(kept_correct, total),
        "web_accuracy": _ratio(web_correct, total),
        "per_noise": dict(sorted(per_noise.items(), key=lambda item: order.get(item[0], len(order)))),
        **_cut_clips(rows),
    }


def _cut_clips(rows: list[dict]) -> dict:
    """``cut_clips``: the same figures over the clips that cut to another scene (``demo-data --cuts``), where
    which frames are looked at matters most; nothing when the input has none."""
    cut = [row for row in rows if "cut" in json.loads(row.get("json") or "{}")]
    if not cut:
        return {}
    kept = [row for row in cut if row.get("status") == "kept"]
    correct = sum(_correct(row.get("caption"), ground_truth(row)[0]) for row in kept)
    return {
        "cut_clips": {
            "count": len(cut),
            "kept": len(kept),
            "kept_correct": correct,
            "kept_accuracy": _ratio(correct, len(kept)),
            "clean_yield": _ratio(correct, len(cut)),
        }
    }


def ablation_choice(row: dict, name: str, threshold: float, web_margin: float) -> str | None:
    """The caption that ablation ``name`` keeps for ``row``, or None when it drops the sample."""
    web = row.get("web_text")
    web = web if web is not None and web.strip() else None
    web_score = row.get("web_score")
    texts = list(row.get("synthetic_texts") or [])
    scores = list(row.get("synthetic_scores") or [])
    if name == "none":
        return web
    if name == "filter":
        return web if web is not None and web_score is not None and web_score >= threshold else None
    if name == "captioner":
        return texts[0] if texts else None
    if name == "capfilt":
        decision = choose(web, web_score, texts, scores, "best", threshold, web_margin)
        return decision.chosen.text if decision.chosen is not None else None
    raise ValueError(f"unknown ablation {name!r}; expected one of {', '.join(ABLATION_ROWS)}")


def ablation_rows(rows: list[dict], threshold: float, web_margin: float = 0.0) -> list[dict]:
    """BLIP Table 1's four settings recomputed from the recorded scores of the same samples.

    ``none`` keeps every non-empty web caption; ``filter`` keeps the web caption when its score reaches
    ``threshold``; ``captioner`` keeps the first synthetic caption unfiltered; ``capfilt`` applies the
    ``best`` policy over web and synthetic captions.

    Args:
        rows: parquet rows as dicts (``web_text``, ``web_score``, ``synthetic_texts``, ``synthetic_scores``,
            ``json``).
        threshold: the filter threshold of the run.
        web_margin: the run's ``filter.web_margin``.

    Returns:
        One dict per setting: ``name``, ``input``, ``kept``, ``kept_correct``, ``accuracy``, ``yield``,
        ``clean_yield``.
    """
    results = []
    for name in ABLATION_ROWS:
        kept = kept_correct = 0
        for row in rows:
            caption = ablation_choice(row, name, threshold, web_margin)
            if caption is not None:
                kept += 1
                kept_correct += _correct(caption, ground_truth(row)[0])
        results.append(
            {
                "name": name,
                "input": len(rows),
                "kept": kept,
                "kept_correct": kept_correct,
                "accuracy": _ratio(kept_correct, kept),
                "yield": _ratio(kept, len(rows)),
                "clean_yield": _ratio(kept_correct, len(rows)),
            }
        )
    return results


MISS_KINDS = ("no_correct_candidate", "correct_rejected", "outranked_by_web", "outranked_by_synthetic")


def capfilt_misses(rows: list[dict], threshold: float, web_margin: float = 0.0) -> dict[str, int]:
    """Why CapFilt did not keep a correct caption, counted over ``rows``: the captioner's miss
    (``no_correct_candidate``: neither the web caption nor any synthetic one was right) or the filter's (a right
    one was there but every candidate scored below ``threshold``, or a wrong web or synthetic caption
    outscored it).

    Args:
        rows: parquet rows as dicts, as for ``ablation_rows``.
        threshold, web_margin: the run's filter settings.
    """
    misses = dict.fromkeys(MISS_KINDS, 0)
    for row in rows:
        truth = ground_truth(row)[0]
        chosen = ablation_choice(row, "capfilt", threshold, web_margin)
        if _correct(chosen, truth):
            continue
        web = row.get("web_text") if row.get("web_score") is not None else None
        candidates = ([web] if web is not None else []) + list(row.get("synthetic_texts") or [])
        if not any(_correct(text, truth) for text in candidates):
            misses["no_correct_candidate"] += 1
        elif chosen is None:
            misses["correct_rejected"] += 1
        elif chosen == web:
            misses["outranked_by_web"] += 1
        else:
            misses["outranked_by_synthetic"] += 1
    return misses


def evaluate(output_dir: str) -> dict:
    """Quality of the run in ``output_dir`` against the demo ground truth; see ``evaluate_rows``.

    Args:
        output_dir: a local capfilt output directory holding ``*.parquet``.
    """
    return evaluate_rows(read_rows(output_dir))


def ablation(output_dir: str) -> list[dict]:
    """BLIP Table 1's ablation over the run in ``output_dir``, with its threshold and web margin from
    ``report.json``; see ``ablation_rows``.

    Args:
        output_dir: a local capfilt output directory holding ``*.parquet`` and ``report.json``.
    """
    threshold, web_margin = read_filter_config(output_dir)
    return ablation_rows(read_rows(output_dir), threshold, web_margin)


def format_evaluation(result: dict) -> str:
    """A plain-text summary of ``evaluate``'s result: totals, then one line per noise kind."""
    lines = [
        f"input samples          {result['input']}",
        f"kept                   {result['kept']}  (yield {result['yield']:.3f})",
        f"kept caption accuracy  {result['kept_accuracy']:.3f}  ({result['kept_correct']} correct)",
        f"clean yield            {result['clean_yield']:.3f}  (correct kept / input)",
        f"web caption accuracy   {result['web_accuracy']:.3f}  (before cleaning)",
        "",
        f"{'noise':<14}{'count':>7}{'kept':>7}{'correct':>9}{'web':>6}{'synth':>7}",
    ]
    for kind, c in result["per_noise"].items():
        lines.append(
            f"{kind:<14}{c['count']:>7}{c['kept']:>7}{c['kept_correct']:>9}{c['kept_web']:>6}{c['kept_synthetic']:>7}"
        )
    if "cut_clips" in result:
        c = result["cut_clips"]
        lines.append(
            f"\nclips with a cut       {c['count']}: {c['kept']} kept, {c['kept_correct']} with the caption of the "
            f"longer scene (accuracy {c['kept_accuracy']:.3f}, clean yield {c['clean_yield']:.3f})"
        )
    return "\n".join(lines)


def format_ablation(rows: list[dict]) -> str:
    """A plain-text table of ``ablation``'s rows, in BLIP Table 1's order."""
    lines = [f"{'setting':<11}{'kept':>7}{'accuracy':>10}{'yield':>8}{'clean yield':>13}"]
    for r in rows:
        lines.append(f"{r['name']:<11}{r['kept']:>7}{r['accuracy']:>10.3f}{r['yield']:>8.3f}{r['clean_yield']:>13.3f}")
    return "\n".join(lines)


# ---- deduplication against the injected copies (``demo-data --duplicates``) ----

# The rows that reached the selection's decision: kept, removed as a copy, or cut for their score. The others were
# dropped before (unreadable, no caption, ...) and never took part. With a scored run that was not ``score_only``,
# its own ``below_threshold`` rows count here too.
SELECTABLE = ("kept", "duplicate", "below_threshold", "below_fraction")


def _copy_of(row: dict) -> tuple[str, str | None]:
    """The key of the original a row's sample copies (its own key when it is an original) and the copy's kind
    (None for an original), from the ground truth ``demo-data --duplicates`` writes into a copy's json."""
    try:
        copy = json.loads(row.get("json") or "{}").get("duplicate") or {}
        return str(copy["of"]), str(copy["kind"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return row["key"], None


def deduplication_rows(rows: list[tuple[str, dict]]) -> dict | None:
    """How well a selection removed the injected copies, or None when the rows hold no copy and no removal.

    A group is an original and its copies, counted among its selectable members (``SELECTABLE``); the ideal
    removes all but one of each. A removal is right when its ``duplicate_of`` names a member of the same group.
    By kind, a copy counts as found when it and its original end in the same kept sample (one removed in the
    other's place, or both in a third's): removing the original in favour of a copy of another kind does not
    find this one.

    Args:
        rows: ``(shard, parquet row)`` pairs (``read_shard_rows``).

    Returns:
        ``groups`` (groups of more than one selectable member), ``copies`` (what the ideal removes: the sum of
        size − 1), ``removed`` (rows removed as duplicates), ``found`` (right removals, at most size − 1 per
        group), ``recall`` (found / copies), ``per_kind`` (for each copy kind, ``copies`` whose original is
        selectable, ``found`` as above, ``recall``), ``wrong_merges`` (removals naming a sample of another group,
        or none of this output), ``wrong_merges_same_description`` (those of them naming a sample of the same
        ground-truth caption: another render of the scene, its objects a few pixels away), ``groups_removed``
        (groups every selectable member of which was removed), ``descriptions`` (distinct ground-truth captions
        among the selectable samples) and ``descriptions_lost`` (those none of whose samples is left).

    A demo scene is its description: two renders of one caption differ only by the jitter of its objects (a few
    pixels, sometimes none: identical bytes), so the goal "no removal of a scene's only image" is
    ``descriptions_lost == 0``; ``groups_removed`` is the stricter count that calls every render a scene.
    """
    group_of: dict[str, str] = {}
    groups: dict[str, list[tuple[str, str | None, dict]]] = {}
    copied = False
    for shard, row in rows:
        origin, kind = _copy_of(row)
        name = f"{shard}/{row['key']}"
        group_of[name] = origin
        copied |= kind is not None
        if row.get("status") in SELECTABLE:
            groups.setdefault(origin, []).append((name, kind, row))
    removed = [(name, row) for members in groups.values() for name, _, row in members if row["status"] == "duplicate"]
    if not copied and not removed:
        return None
    copies = found = 0
    pairs, joined = Counter(), Counter()  # by copy kind: copies beside their original, and those merged with it
    for origin, members in groups.items():
        # Where each member ended up: in the sample kept in its place when it was rightly removed, else itself.
        kept_as = {
            n: r["duplicate_of"] if r["status"] == "duplicate" and group_of.get(r["duplicate_of"]) == origin else n
            for n, _, r in members
        }
        copies += len(members) - 1
        found += min(len(members) - 1, sum(kept_as[n] != n for n in kept_as))
        original = next((n for n, kind, _ in members if kind is None), None)
        for name, kind, _ in members:
            if kind is not None and original is not None:
                pairs[kind] += 1
                joined[kind] += kept_as[name] == kept_as[original]
    wrong = [(name, row) for name, row in removed if group_of.get(row["duplicate_of"]) != group_of[name]]
    # Rows without a ground-truth caption (not demo samples) take part in no description figure.
    description = {n: ground_truth(r)[0] for members in groups.values() for n, _, r in members}
    described = {d for d in description.values() if d is not None}
    left = {description[n] for members in groups.values() for n, _, r in members if r["status"] != "duplicate"}
    return {
        "groups": sum(len(members) > 1 for members in groups.values()),
        "copies": copies,
        "removed": len(removed),
        "found": found,
        "recall": _ratio(found, copies),
        "per_kind": {
            kind: {"copies": pairs[kind], "found": joined[kind], "recall": _ratio(joined[kind], pairs[kind])}
            for kind in DUPLICATE_KINDS
            if kind in pairs
        },
        "wrong_merges": len(wrong),
        "wrong_merges_same_description": sum(
            description[name] is not None and description.get(row["duplicate_of"]) == description[name]
            for name, row in wrong
        ),
        "groups_removed": sum(all(r["status"] == "duplicate" for *_, r in members) for members in groups.values()),
        "descriptions": len(described),
        "descriptions_lost": len(described - left),
    }


def deduplication(output_dir: str) -> dict | None:
    """``deduplication_rows`` over the output in ``output_dir``."""
    return deduplication_rows(read_shard_rows(output_dir))


def format_deduplication(result: dict) -> str:
    """A plain-text summary of ``deduplication``'s result, one line per copy kind under the recall."""
    lines = [
        f"groups of copies       {result['groups']}  ({result['copies']} to remove: all but one of each)",
        f"removed as duplicates  {result['removed']}",
        f"dedup recall           {result['recall']:.3f}  ({result['found']} of {result['copies']} removed)",
    ]
    for kind, c in result["per_kind"].items():
        lines.append(f"  {kind:<21}{c['recall']:.3f}  ({c['found']} of {c['copies']})")
    lines += [
        f"wrong merges           {result['wrong_merges']}  (removed as a copy of another group's sample; "
        f"{result['wrong_merges_same_description']} of them another render of the same caption)",
        f"groups removed whole   {result['groups_removed']}  (every member removed as a duplicate)",
        f"descriptions lost      {result['descriptions_lost']} of {result['descriptions']}  "
        "(captions none of whose samples is left)",
    ]
    return "\n".join(lines)

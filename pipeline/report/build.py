"""The run report: totals and score histograms summed from every shard's stats, then ``_SUCCESS``."""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from .. import storage
from ..errors import UsageError
from ..stats import HISTOGRAM_BINS, Stats
from .html import render as render_html

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
SUCCESS = "_SUCCESS"
SIZES_JSON = "sizes.json"
MAX_LISTED_SHARDS = 200  # open_clip's WebDataset loader reads the dataset size from it


def build_report(stats: Stats, config: dict) -> dict:
    """The content of report.json for ``stats`` (all shards added together) under ``config``."""
    fraction = stats.kept / stats.input if stats.input else 0.0
    return {
        "pipeline": config.get("name"),
        "totals": {
            "shards": stats.shards,
            "failed_shards": stats.failed_shards,
            "truncated_shards": stats.truncated_shards,
            "input": stats.input,
            "kept": stats.kept,
            "kept_web": stats.kept_web,
            "kept_synthetic": stats.kept_synthetic,
            "dropped": stats.dropped,
            "sample_errors": stats.errors,
            "kept_fraction": round(fraction, 6),
            "model_seconds": round(stats.seconds, 3),
        },
        "histograms": _histograms(stats, config.get("filter", {})),
        "examples": stats.examples,
        "shards": _listed_shards(stats.per_shard),
        "config": config,
    }


def _histograms(stats: Stats, filter_config: dict) -> dict:
    """ITM score histograms, and similarity histograms when similarities were computed; the threshold is drawn on
    the score the policy used."""
    by_similarity = filter_config.get("score") == "similarity"
    histograms = {
        "edges": [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)],
        "web": stats.web_scores,
        "synthetic": stats.synthetic_scores,
        "threshold": None if by_similarity else filter_config.get("threshold"),
    }
    if any(stats.web_similarities) or any(stats.synthetic_similarities):
        histograms["similarity"] = {
            "edges": [round(2 * i / HISTOGRAM_BINS - 1, 4) for i in range(HISTOGRAM_BINS + 1)],
            "web": stats.web_similarities,
            "synthetic": stats.synthetic_similarities,
            "threshold": filter_config.get("threshold") if by_similarity else None,
        }
    return histograms


def _listed_shards(per_shard: dict[str, dict]) -> dict[str, dict]:
    """The per-shard table of the report: every failed or cut shard, then the first ones by name up to
    ``MAX_LISTED_SHARDS`` (a million-shard run's table belongs in its stats files, not in one page)."""
    troubled = {n: s for n, s in per_shard.items() if s["status"] != "ok"}
    first = dict(list(per_shard.items())[: max(MAX_LISTED_SHARDS - len(troubled), 0)])
    return dict(sorted({**first, **troubled}.items()))


def write_report(output_dir: str, stats: Stats, config: dict) -> dict:
    """Write report.json and report.html, clear temporary files, and mark the run complete with ``_SUCCESS``."""
    report = build_report(stats, config)
    sizes = {f"{name}.tar": shard["kept"] for name, shard in stats.per_shard.items()}
    storage.write_bytes(storage.join(output_dir, SIZES_JSON), (json.dumps(sizes, indent=1) + "\n").encode(), output_dir)
    data = (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    storage.write_bytes(storage.join(output_dir, REPORT_JSON), data, output_dir)
    html = render_html(report).encode("utf-8")
    storage.write_bytes(storage.join(output_dir, REPORT_HTML), html, output_dir)
    storage.remove_temp_dir(output_dir)  # leftovers of killed attempts go before the run is marked done
    # Not empty: Beam's S3 writer cannot upload a zero-byte object.
    done = json.dumps({"shards": stats.shards, "input": stats.input, "kept": stats.kept}) + "\n"
    storage.write_bytes(storage.join(output_dir, SUCCESS), done.encode(), output_dir)
    storage.remove_temp_dir(output_dir)  # the folder that writing _SUCCESS itself used
    return report


def update_report(output_dir: str, extra: dict) -> dict:
    """Add ``extra``'s keys to report.json (an evaluation, say) and render report.html again with them."""
    path = storage.join(output_dir, REPORT_JSON)
    report = {**json.loads(storage.read_bytes(path)), **extra}
    storage.write_bytes(path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"), output_dir)
    storage.write_bytes(storage.join(output_dir, REPORT_HTML), render_html(report).encode("utf-8"), output_dir)
    storage.remove_temp_dir(output_dir)
    return report


def require_output(output_dir: str) -> None:
    """Refuse, before anything is written, a folder that holds no capfilt output (no shard's stats file)."""
    try:
        found = FileSystems.match([storage.join(output_dir, "*_stats.json")])[0].metadata_list
    except Exception:  # a missing folder, an unknown scheme: nothing there either way
        found = []
    if not found:
        raise UsageError(f"{output_dir}: no capfilt output here (no NAME_stats.json)")


def stats_on_disk(output_dir: str) -> Stats:
    """All shard stats files under ``output_dir`` added together."""
    total = Stats()
    for meta in FileSystems.match([storage.join(output_dir, "*_stats.json")])[0].metadata_list:
        total = total + Stats.from_json(storage.read_bytes(meta.path))
    return total


def rebuild_report(output_dir: str) -> dict:
    """Rebuild the report from the files on disk, keeping the configuration an earlier report recorded."""
    require_output(output_dir)
    path = storage.join(output_dir, REPORT_JSON)
    config = json.loads(storage.read_bytes(path)).get("config", {}) if storage.exists(path) else {}
    return write_report(output_dir, stats_on_disk(output_dir), config)

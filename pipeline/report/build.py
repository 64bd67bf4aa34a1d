"""The run report: totals and score histograms summed from every shard's stats, then ``_SUCCESS``."""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from .. import storage
from ..stats import HISTOGRAM_BINS, Stats
from .html import render as render_html

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
SUCCESS = "_SUCCESS"


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
        "histograms": {
            "edges": [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)],
            "web": stats.web_scores,
            "synthetic": stats.synthetic_scores,
            "threshold": config.get("filter", {}).get("threshold"),
        },
        "examples": stats.examples,
        "config": config,
    }


def write_report(output_dir: str, stats: Stats, config: dict) -> dict:
    """Write report.json and report.html, clear temporary files, and mark the run complete with ``_SUCCESS``."""
    report = build_report(stats, config)
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


def stats_on_disk(output_dir: str) -> Stats:
    """All shard stats files under ``output_dir`` added together."""
    total = Stats()
    for meta in FileSystems.match([storage.join(output_dir, "*_stats.json")])[0].metadata_list:
        total = total + Stats.from_json(storage.read_bytes(meta.path))
    return total


def rebuild_report(output_dir: str) -> dict:
    """Rebuild the report from the files on disk, keeping the configuration an earlier report recorded."""
    path = storage.join(output_dir, REPORT_JSON)
    config = json.loads(storage.read_bytes(path)).get("config", {}) if storage.exists(path) else {}
    return write_report(output_dir, stats_on_disk(output_dir), config)

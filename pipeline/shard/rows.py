"""The decision log: one parquet row per input sample, kept or not. Built here and nowhere else."""

from __future__ import annotations

import pyarrow as pa

from .sample import Sample

ROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("caption", pa.string()),
        ("source", pa.string()),
        ("score", pa.float64()),
        ("web_text", pa.string()),
        ("web_score", pa.float64()),
        ("synthetic_texts", pa.list_(pa.string())),
        ("synthetic_scores", pa.list_(pa.float64())),
        ("similarity", pa.float64()),
        ("web_similarity", pa.float64()),
        ("synthetic_similarities", pa.list_(pa.float64())),
        ("kept_texts", pa.list_(pa.string())),
        ("image_ext", pa.string()),
        ("members", pa.list_(pa.string())),
        ("json", pa.string()),
        ("media", pa.string()),
        ("frames", pa.int32()),
        ("duration", pa.float64()),
        ("sha256", pa.string()),
        ("duplicate_of", pa.string()),
    ]
)


def sample_row(sample: Sample) -> dict:
    """The parquet row of ``sample`` once its status is final (``kept`` or a drop reason). ``score`` and
    ``similarity`` are the chosen caption's ITM score and similarity, whichever of them the policy ranked by."""
    kept = sample.status == "kept"
    chosen = sample.decision.chosen if kept else None
    score, similarity = sample.scores_of(chosen.text) if chosen else (None, None)
    return {
        "key": sample.key,
        "status": sample.status,
        "error": sample.error,
        "caption": chosen.text if chosen else None,
        "source": chosen.source if chosen else None,
        "score": score,
        "web_text": sample.web_text,
        "web_score": sample.web_score,
        "synthetic_texts": sample.synthetic,
        "synthetic_scores": sample.synthetic_scores,
        "similarity": similarity,
        "web_similarity": sample.web_similarity,
        "synthetic_similarities": sample.synthetic_similarities if sample.has_similarity else None,
        "kept_texts": [c.text for c in sample.decision.kept] if kept else [],
        "image_ext": sample.image_ext,
        "members": list(sample.members),
        "json": sample.meta_text,
        "media": sample.media,
        "frames": sample.frame_count,
        "duration": sample.duration,
        "sha256": sample.sha256,
        "duplicate_of": sample.duplicate_of,
    }


def rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)

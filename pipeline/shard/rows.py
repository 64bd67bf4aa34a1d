"""The decision log: one parquet row per input sample, kept or not. Built here and nowhere else."""

from __future__ import annotations

import pyarrow as pa

from .sample import Sample

TYPES = {
    "string": pa.string(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "strings": pa.list_(pa.string()),
    "floats": pa.list_(pa.float64()),
}
# The columns in order, as NAME:TYPE (the README lists them; a test holds the two together).
COLUMNS = """
key:string status:string error:string caption:string source:string score:float64
web_text:string web_score:float64 synthetic_texts:strings synthetic_scores:floats
similarity:float64 web_similarity:float64 synthetic_similarities:floats kept_texts:strings
image_ext:string members:strings json:string media:string frames:int32 duration:float64
sha256:string duplicate_of:string
"""
ROW_SCHEMA = pa.schema([(name, TYPES[kind]) for name, kind in (column.split(":") for column in COLUMNS.split())])


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

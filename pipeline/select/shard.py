"""One shard of a selection: its parquet rows decided again against the cut, kept samples' members copied
byte for byte from the scored tar (no model, no re-encoding), written as a complete capfilt output shard."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq

from .. import interrupt, storage
from ..policy import Decision, decide
from ..reasons import NOTES
from ..resume import recorded_settings
from ..shard.embeddings import embedding_paths
from ..shard.reader import TarSamples
from ..shard.sample import Sample
from ..shard.sink import ShardSink
from ..shard.writer import output_paths
from ..shard_job import ShardFn
from ..stats import Stats
from .cut import Cut, best_score, order_keys, selectable_rows
from .settings import SelectConfig, source_stats


def read_rows(config: SelectConfig, name: str) -> list[dict]:
    with storage.open_raw(output_paths(config.scored_dir, name)["parquet"]) as handle:
        return pq.read_table(handle).to_pylist()


def selection_keys(shard: tuple[str, dict], config: SelectConfig) -> tuple[str, np.ndarray]:
    """A shard's selectable samples (kept in the scored folder, with a score, not a duplicate) as ``order_keys``,
    in row order; ``shard`` is its name and its duplicates (key -> the kept copy)."""
    name, duplicates = shard
    rows, best, _ = selectable_rows(config, name, [])
    survivors = [key not in duplicates for key in rows["key"]]
    return name, order_keys(best[np.array(survivors, dtype=bool)])


def sample_from_row(row: dict, members: dict[str, bytes] | None, frame_times: list[float] = ()) -> Sample:
    """The Sample a parquet row records, live again when it was kept (so ``decide`` can choose anew), with
    ``members`` read from the scored tar (names only for a dropped sample, whose bytes were never written) and a
    clip's ``frame_times`` (its scored json holds them, the row does not)."""
    parts = row["error"].split("; ") if row["error"] else []
    notes = [p for p in parts if p.split(":", 1)[0] in NOTES]
    sample = Sample(
        key=row["key"],
        members=members if members is not None else dict.fromkeys(row["members"], b""),
        notes=notes,
        detail="; ".join(p for p in parts if p not in notes),
        image_ext=row["image_ext"],
        web_text=row["web_text"],
        meta_text=row["json"],
        synthetic=row["synthetic_texts"] or [],
        web_score=row["web_score"],
        synthetic_scores=row["synthetic_scores"] or [],
        web_similarity=row["web_similarity"],
        synthetic_similarities=row["synthetic_similarities"] or [],
        # Folders scored before videos were read have no such columns.
        media=row.get("media"),
        frame_count=row.get("frames"),
        duration=row.get("duration"),
        frame_times=list(frame_times),
        # Folders scored before media hashes were recorded have neither.
        sha256=row.get("sha256"),
        duplicate_of=row.get("duplicate_of"),
    )
    if row["status"] == "kept":
        sample.meta = json.loads(row["json"]) if row["json"] else {}
    else:
        sample.status, sample.decision = row["status"], Decision(None, reason=row["status"])
    return sample


def _frame_times(written: Sample | None) -> list[float]:
    """When a kept clip's scored frames were shown, from the ``capfilt`` object the scored run wrote."""
    data = written.members.get("json") if written else None
    return json.loads(data).get("capfilt", {}).get("video", {}).get("times", []) if data else []


def _input_members(row: dict, scored: Sample) -> dict[str, bytes]:
    """A kept row's input members, in input order, from its scored tar sample (where txt and json may have been
    written lower-cased or added at the end)."""
    if scored.key != row["key"]:
        raise ValueError(f"scored tar and parquet disagree: sample {scored.key!r} where {row['key']!r} was kept")
    lower = {ext.lower(): data for ext, data in scored.members.items()}
    members = {}
    for ext in row["members"]:
        data = scored.members.get(ext, lower.get(ext.lower()))
        if data is None:
            raise ValueError(f"scored tar lacks member {row['key']}.{ext} of a kept sample")
        members[ext] = data
    return members


def _embeddings(config: SelectConfig, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The scored shard's image and text embedding rows (a shard with a kept sample always has them)."""
    paths = embedding_paths(config.scored_dir, name)
    return tuple(np.load(io.BytesIO(storage.read_bytes(paths[kind]))) for kind in ("img_emb", "text_emb"))


def select_shard(name: str, config: SelectConfig, cut: Cut, output_dir: str, duplicates: dict | None = None) -> Stats:
    """Write shard ``name`` of the selection to ``output_dir``; returns its stats. ``duplicates`` maps the keys
    of the shard's samples that are copies to the ``SHARD/KEY`` kept in their place."""
    duplicates = duplicates or {}
    source = source_stats(config.scored_dir, name)
    if source.get("fingerprint") != config.source_fingerprint:
        raise ValueError(f"scored shard {name} was made with other settings than the rest of the pool")
    # A shard the scored run could not read, or read only up to a cut, stays on record as such.
    status = source.get("per_shard", {}).get(name, {}).get("status", "ok")
    sink = ShardSink(
        output_dir,
        name,
        config.policy,
        config.score,
        config.embeddings,
        config.decode.max_pixels,
        config.video,
        recorded_settings(config),
    )
    with sink, storage.open_raw(config.shard_path(name)) as stream:
        scored = iter(TarSamples(stream, config.decode.max_member_bytes, config.video.max_member_bytes))
        embeddings = None
        ties_kept, kept_index = 0, 0
        for row in read_rows(config, name):
            written = next(scored) if row["status"] == "kept" else None
            members = _input_members(row, written) if written else None
            sample = sample_from_row(row, members, _frame_times(written))
            if sample.live:
                if config.embeddings:
                    embeddings = embeddings or _embeddings(config, name)
                    sample.image_embedding = embeddings[0][kept_index].astype(np.float32)
                    sample.text_embeddings = {row["caption"]: embeddings[1][kept_index].astype(np.float32)}
                kept_index += 1
                if sample.key in duplicates:
                    sample.duplicate_of = duplicates[sample.key]
                    sample.drop("duplicate", f"a copy of {sample.duplicate_of}, which scored better")
                else:
                    ties_kept += _apply_cut(sample, best_score(row, config.score), name, cut, ties_kept, config)
            sink.add(sample)
            interrupt.raise_if_stopping()
    return sink.commit(status, source.get("error", ""))


def _apply_cut(sample: Sample, score: float | None, name: str, cut: Cut, ties_kept: int, config: SelectConfig) -> int:
    """Keep or drop one selectable sample; returns 1 when it was kept as one of the shard's ties at the cut."""
    tie = False
    if score is None:
        keep = False
    elif cut.tie_quota is None:
        keep = score >= cut.threshold
    else:
        key = int(order_keys([score])[0])
        tie = key == cut.key
        keep = key > cut.key or (tie and ties_kept < cut.tie_quota.get(name, 0))
    if not keep:
        if score is None:
            detail = f"no {config.score} score"
        elif tie:
            detail = f"tied with the cut at {config.score} {score:.6f}, after the pool's quota of ties"
        else:
            detail = f"best {config.score} {score:.6f} under the cut {cut.threshold:.6f}"
        sample.drop(config.drop_reason, detail)
        return 0
    decide(sample, config.policy, cut.threshold, config.web_margin, config.score)
    return int(tie)


class SelectShardFn(ShardFn):
    """Takes a shard name with its duplicates (key -> the kept copy) and the cut (a side input), writes the
    shard's selection, and emits its Stats (``ShardFn`` skips shards already complete, after checking the same
    selection of the same pool made them)."""

    def shard_of(self, shard: tuple[str, dict]) -> str:
        return shard[0]

    def write_shard(self, shard: tuple[str, dict], cut: Cut) -> Stats:
        name, duplicates = shard
        return select_shard(name, self.config, cut, self.output_dir, duplicates)

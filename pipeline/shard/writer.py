"""Writing one output shard: the kept samples as WebDataset tar, every sample as a parquet row, stats last."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

from .. import storage
from ..stats import Stats
from .embeddings import EmbeddingWriter
from .rows import rows_table, sample_row
from .sample import Sample
from .tar_writer import DeterministicTarWriter


def output_paths(output_dir: str, name: str) -> dict[str, str]:
    return {
        kind: storage.join(output_dir, name + suffix)
        for kind, suffix in (("tar", ".tar"), ("parquet", ".parquet"), ("stats", "_stats.json"))
    }


def capfilt_record(sample: Sample, policy: str, by: str = "itm") -> dict:
    """The ``capfilt`` object of a kept sample's json: the choice, every candidate and its ITM score, and
    its similarity beside each score when one was computed (then ``by`` says which score the policy used)."""
    decision = sample.decision
    score, similarity = sample.scores_of(decision.chosen.text)
    has_similarity = sample.has_similarity
    synthetic_similarities = sample.synthetic_similarities if has_similarity else [None] * len(sample.synthetic)

    def candidate(text, score, similarity, text_key="text", **extra) -> dict:
        entry = {text_key: text, **extra, "score": _round(score)}
        if has_similarity:
            entry["similarity"] = _round(similarity)
        return entry

    record = {
        **candidate(decision.chosen.text, score, similarity, "caption", source=decision.chosen.source),
        "web": candidate(sample.web_text, sample.web_score, sample.web_similarity),
        "synthetic": [
            candidate(t, s, c)
            for t, s, c in zip(sample.synthetic, sample.synthetic_scores, synthetic_similarities, strict=True)
        ],
        "policy": policy,
    }
    if has_similarity:
        record["by"] = by
    if sample.media == "video":  # which moments of the clip the scores were read from
        record["video"] = {"frames": sample.frame_count, "times": sample.frame_times, "duration": sample.duration}
    if policy == "all":
        record["kept"] = [candidate(c.text, *sample.scores_of(c.text), source=c.source) for c in decision.kept]
    return record


def output_members(sample: Sample, policy: str, by: str = "itm") -> list[tuple[str, bytes]]:
    """A kept sample's members for the output tar, in input order: ``txt`` becomes the chosen caption and
    ``json`` the input fields plus the ``capfilt`` object; every other member travels byte for byte."""
    caption = sample.decision.chosen.text
    meta = {k: v for k, v in (sample.meta or {}).items() if k != "capfilt"}
    if "caption" in meta:  # img2dataset's json repeats the caption; a stale copy would contradict .txt
        meta["caption"] = caption
    meta["capfilt"] = capfilt_record(sample, policy, by)
    replaced = {"txt": caption.encode("utf-8"), "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")}
    members = []
    for ext, data in sample.members.items():
        lower = ext.lower()
        if lower in replaced:
            members.append((lower, replaced.pop(lower)))
        else:
            members.append((ext, data))
    return members + list(replaced.items())


def _round(score: float | None) -> float | None:
    return None if score is None else round(score, 6)


class ShardWriter:
    """Streams kept samples into ``NAME.tar`` and collects a row per input sample for ``NAME.parquet``.

    Nothing is visible under a final name until ``commit``, which renames the tar, then writes the embedding
    files (if any), then the parquet, then ``NAME_stats.json``, whose presence therefore means the shard is
    complete.

    Args:
        output_dir: the run's output folder (any Beam filesystem).
        name: the shard's base name.
        policy: the selection policy, recorded in each kept sample's json.
        by: the score the policy ranked by (``itm`` or ``similarity``), recorded beside it.
        embeddings: write clip-retrieval's embedding files of the kept samples.
    """

    def __init__(self, output_dir: str, name: str, policy: str, by: str = "itm", embeddings: bool = False):
        self.output_dir, self.policy, self.by = output_dir, policy, by
        self.paths = output_paths(output_dir, name)
        self._tar_file = storage.AtomicFile(self.paths["tar"], output_dir)
        self._tar = DeterministicTarWriter(self._tar_file)
        self._rows: list[dict] = []
        self._embeddings = EmbeddingWriter(output_dir, name) if embeddings else None

    def write(self, sample: Sample) -> None:
        self._rows.append(sample_row(sample))
        if sample.status == "kept":
            for ext, data in output_members(sample, self.policy, self.by):
                self._tar.add(f"{sample.key}.{ext}", data)
            if self._embeddings is not None:
                self._embeddings.add(sample, sample.decision.chosen.text)

    def commit(self, stats: Stats, **extra) -> None:
        self._tar.close()
        self._tar_file.commit()
        if self._embeddings is not None:
            self._embeddings.commit()
        buffer = io.BytesIO()
        pq.write_table(rows_table(self._rows), buffer, compression="zstd")
        storage.write_bytes(self.paths["parquet"], buffer.getvalue(), self.output_dir)
        storage.write_bytes(self.paths["stats"], stats.to_json(**extra), self.output_dir)

    def discard(self) -> None:
        """Drop this attempt: nothing of it stays, under a final name or a temporary one."""
        try:
            self._tar.close()  # else tarfile flushes into the closed file when collected
        finally:
            self._tar_file.discard()

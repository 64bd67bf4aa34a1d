"""Writing one output shard: the kept samples as WebDataset tar, every sample as a parquet row, stats last."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

from .. import storage
from ..stats import Stats
from .rows import rows_table, sample_row
from .sample import Sample
from .tar_writer import DeterministicTarWriter


def output_paths(output_dir: str, name: str) -> dict[str, str]:
    return {
        kind: storage.join(output_dir, name + suffix)
        for kind, suffix in (("tar", ".tar"), ("parquet", ".parquet"), ("stats", "_stats.json"))
    }


def capfilt_record(sample: Sample, policy: str) -> dict:
    """The ``capfilt`` object of a kept sample's json: the choice, every candidate and its score."""
    decision = sample.decision
    record = {
        "caption": decision.chosen.text,
        "source": decision.chosen.source,
        "score": round(decision.chosen.score, 6),
        "web": {"text": sample.web_text, "score": _round(sample.web_score)},
        "synthetic": [
            {"text": t, "score": round(s, 6)} for t, s in zip(sample.synthetic, sample.synthetic_scores, strict=True)
        ],
        "policy": policy,
    }
    if sample.media == "video":  # which moments of the clip the scores were read from
        record["video"] = {"frames": sample.frame_count, "times": sample.frame_times, "duration": sample.duration}
    if policy == "all":
        record["kept"] = [{"text": c.text, "source": c.source, "score": round(c.score, 6)} for c in decision.kept]
    return record


def output_members(sample: Sample, policy: str) -> list[tuple[str, bytes]]:
    """A kept sample's members for the output tar, in input order: ``txt`` becomes the chosen caption and
    ``json`` the input fields plus the ``capfilt`` object; every other member travels byte for byte."""
    caption = sample.decision.chosen.text
    meta = {k: v for k, v in (sample.meta or {}).items() if k != "capfilt"}
    if "caption" in meta:  # img2dataset's json repeats the caption; a stale copy would contradict .txt
        meta["caption"] = caption
    meta["capfilt"] = capfilt_record(sample, policy)
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

    Nothing is visible under a final name until ``commit``, which renames the tar, then writes the parquet,
    then ``NAME_stats.json``, whose presence therefore means the shard is complete.

    Args:
        output_dir: the run's output folder (any Beam filesystem).
        name: the shard's base name.
        policy: the selection policy, recorded in each kept sample's json.
    """

    def __init__(self, output_dir: str, name: str, policy: str):
        self.output_dir, self.policy = output_dir, policy
        self.paths = output_paths(output_dir, name)
        self._tar_file = storage.AtomicFile(self.paths["tar"], output_dir)
        self._tar = DeterministicTarWriter(self._tar_file)
        self._rows: list[dict] = []

    def write(self, sample: Sample) -> None:
        self._rows.append(sample_row(sample))
        if sample.status == "kept":
            for ext, data in output_members(sample, self.policy):
                self._tar.add(f"{sample.key}.{ext}", data)

    def commit(self, stats: Stats, **extra) -> None:
        self._tar.close()
        self._tar_file.commit()
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

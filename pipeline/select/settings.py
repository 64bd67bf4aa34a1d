"""What ``capfilt select`` is asked to do, read from its command line and the scored folder, checked once."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from .. import storage
from ..config import SCORE_RANGES, DecodeConfig, VideoConfig, settings_fingerprint
from ..errors import ConfigError, UsageError
from ..report.build import REPORT_JSON, require_output
from ..resume import LAUNCH_CHECKS
from ..shard.writer import output_paths
from .dedup import MODES as DEDUP_MODES
from .dedup import default_eps

POLICIES = ("best", "all")  # score_only drops nothing, so there is nothing to select


@dataclass(frozen=True)
class SelectConfig:
    """One selection over a scored folder.

    Args:
        scored_dir: the scored capfilt output (best run with ``filter.policy: score_only``).
        names: its shards' base names, sorted.
        score: ``itm`` or ``similarity``: the score ranked and thresholded.
        policy: ``best`` or ``all``, as in ``run``.
        web_margin: as ``filter.web_margin``, in the unit of ``score``.
        threshold: keep samples whose best candidate scores at least this (or None with ``keep_fraction``).
        keep_fraction: keep this share of the pool, ranked by the best candidate's score (or None).
        source: the scored run's recorded config (report.json).
        source_fingerprint: the scored run's settings fingerprint, so a resumed selection never mixes sources.
        embeddings: the scored folder has clip-retrieval embedding files, so the selection gets them too.
        dedup: ``exact`` or ``semantic`` to keep one sample of each group of copies (``select.dedup``), or None.
        dedup_eps: with ``semantic``, image embeddings at cosine ≥ 1 − this are copies.
    """

    scored_dir: str
    names: tuple[str, ...]
    score: str
    policy: str
    web_margin: float
    threshold: float | None
    keep_fraction: float | None
    source: dict
    source_fingerprint: str
    embeddings: bool = False
    dedup: str | None = None
    dedup_eps: float | None = None

    @property
    def drop_reason(self) -> str:
        return "below_fraction" if self.keep_fraction is not None else "below_threshold"

    @property
    def decode(self) -> DecodeConfig:
        """The scored run's read limits (which members it read, which images it thumbnails)."""
        return DecodeConfig(**self.source.get("decode", {}))

    @property
    def video(self) -> VideoConfig:
        """The scored run's video settings (the defaults for a folder scored before videos were read)."""
        return VideoConfig(**self.source.get("video", {}))

    def shard_path(self, name: str) -> str:
        return storage.join(self.scored_dir, f"{name}.tar")

    @property
    def seed(self) -> int:
        """The scored run's seed, which also seeds semantic deduplication's clustering."""
        return self.source.get("seed", 0)

    def output_settings(self) -> dict:
        """What decides the selection's bytes; a resumed selection must share them (``read_done_stats``)."""
        chosen = {k: v for k, v in asdict(self).items() if k in ("score", "policy", "web_margin")}
        select = {**chosen, "threshold": self.threshold, "keep_fraction": self.keep_fraction}
        if self.dedup is not None:
            select.update(dedup=self.dedup, dedup_eps=self.dedup_eps)
        return {"select": select, "source": self.source_fingerprint}

    def fingerprint(self) -> str:
        return settings_fingerprint(self.output_settings())

    def settings_known(self) -> bool:
        return True  # no model runs: nothing resolves later

    def report_config(self, threshold: float, pool: int | None, target: int | None) -> dict:
        """The config recorded in the selection's report.json: the scored run's, with the selection's filter."""
        source_filter = self.source.get("filter", {})
        selection = {"policy": self.policy, "score": self.score, "threshold": threshold, "web_margin": self.web_margin}
        return {
            **self.source,
            "name": "select",
            "filter": {**source_filter, **selection},
            "select": {
                "from": self.scored_dir,
                "keep_fraction": self.keep_fraction,
                "threshold": self.threshold,
                "pool": pool,
                "kept_target": target,
                "dedup": self.dedup,
                "dedup_eps": self.dedup_eps,
            },
        }


def load_select_config(
    scored_dir: str,
    threshold: float | None,
    keep_fraction: float | None,
    score: str | None,
    policy: str | None,
    web_margin: float | None,
    dedup: str | None = None,
    dedup_eps: float | None = None,
) -> SelectConfig:
    """Check the command line against the scored folder; raises ConfigError/UsageError in one line."""
    if (threshold is None) == (keep_fraction is None):
        raise UsageError("select: give exactly one of --threshold T and --keep-fraction F")
    if keep_fraction is not None and not 0 < keep_fraction <= 1:
        raise UsageError(f"select: --keep-fraction must be in (0, 1], not {keep_fraction}")
    require_output(scored_dir)
    report_path = storage.join(scored_dir, REPORT_JSON)
    if not storage.exists(report_path):
        raise UsageError(f"{scored_dir}: no {REPORT_JSON}: the scored run did not finish (rerun it to complete it)")
    source = json.loads(storage.read_bytes(report_path)).get("config", {})
    source_filter, source_similarity = source.get("filter", {}), source.get("similarity", {})
    score = score or source_filter.get("score", "itm")
    if score not in SCORE_RANGES:
        raise UsageError(f"select: --score must be one of {', '.join(SCORE_RANGES)}, not {score!r}")
    if score == "similarity" and source_similarity.get("model", "none") == "none":
        raise UsageError(f"{scored_dir}: scored without similarity (similarity.model none); use --score itm")
    low, high = SCORE_RANGES[score]
    if threshold is not None and not low <= threshold <= high:
        raise UsageError(f"select: --threshold for {score} must be between {low} and {high}, not {threshold}")
    policy = policy or (source_filter.get("policy") if source_filter.get("policy") in POLICIES else "best")
    if policy not in POLICIES:
        raise UsageError(f"select: --policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    same_score = score == source_filter.get("score", "itm")
    if web_margin is None:
        web_margin = source_filter.get("web_margin", 0.0) if same_score else 0.0
    names, fingerprint = _scored_shards(scored_dir)
    embeddings = bool(source_similarity.get("embeddings"))
    if embeddings and (not same_score or web_margin != source_filter.get("web_margin", 0.0)):
        # The embedding files hold the text of the caption the run chose; another score or margin could choose
        # a caption whose embedding was never written.
        raise UsageError(
            f"{scored_dir}: has embeddings of the captions chosen by {source_filter.get('score', 'itm')} with "
            f"web_margin {source_filter.get('web_margin', 0.0)}; select with the same --score and --web-margin"
        )
    dedup_eps = _check_dedup(scored_dir, names, source, embeddings, dedup, dedup_eps)
    return SelectConfig(
        scored_dir,
        names,
        score,
        policy,
        web_margin,
        threshold,
        keep_fraction,
        source,
        fingerprint,
        embeddings,
        dedup,
        dedup_eps,
    )


def _check_dedup(
    scored_dir: str, names, source: dict, embeddings: bool, dedup: str | None, eps: float | None
) -> float | None:
    """The ε semantic deduplication uses (None for the other modes), after checking the folder can be deduplicated."""
    if dedup is None or dedup == "exact":
        if eps is not None:
            raise UsageError("select: --dedup-eps applies to --dedup semantic only")
        if dedup == "exact" and names and "sha256" not in _parquet_columns(scored_dir, names[0]):
            raise UsageError(
                f"{scored_dir}: scored before capfilt recorded media hashes (no sha256 column); rerun the scoring"
            )
        return None
    if dedup not in DEDUP_MODES:
        raise UsageError(f"select: --dedup must be one of {', '.join(DEDUP_MODES)}, not {dedup!r}")
    if not embeddings:
        raise UsageError(
            f"{scored_dir}: --dedup semantic compares image embeddings, and this folder has none; score with --set "
            "similarity.model=embedded:siglip (or itc, or a dual encoder checkpoint) --set similarity.embeddings=true"
        )
    if eps is None:
        eps = default_eps(source.get("similarity", {}).get("model", "none"), source.get("filter", {}).get("model", ""))
    if not 0 < eps < 1:
        raise UsageError(f"select: --dedup-eps must be between 0 and 1 (cosine ≥ 1 − eps), not {eps}")
    return eps


def _parquet_columns(scored_dir: str, name: str) -> list[str]:
    with storage.open_raw(output_paths(scored_dir, name)["parquet"]) as handle:
        return pq.read_schema(handle).names


def _scored_shards(scored_dir: str) -> tuple[tuple[str, ...], str]:
    """The scored folder's shard names (one listing) and their settings fingerprint, after checking that every
    shard has its tar and parquet and that all were made with the same settings."""
    listed = FileSystems.match([storage.join(scored_dir, "*")])[0].metadata_list
    files = {m.path.rstrip("/").rsplit("/", 1)[-1] for m in listed}
    names = sorted(f[: -len("_stats.json")] for f in files if f.endswith("_stats.json"))
    for name in names:
        for kind in ("tar", "parquet"):
            if f"{name}.{kind}" not in files:
                raise UsageError(f"{scored_dir}: shard {name} has stats but no {name}.{kind}; the folder is damaged")
    fingerprints = set()
    step = max(1, len(names) // LAUNCH_CHECKS)
    for name in names[::step]:  # spread over the list; each worker checks the shards it reads (select_shard)
        fingerprints.add(source_fingerprint(scored_dir, name))
    if len(fingerprints) != 1:
        raise ConfigError(f"{scored_dir}: shards were made with different settings; it is not one scored pool")
    return tuple(names), fingerprints.pop()


def source_stats(scored_dir: str, name: str) -> dict:
    return json.loads(storage.read_bytes(output_paths(scored_dir, name)["stats"]))


def source_fingerprint(scored_dir: str, name: str) -> str | None:
    return source_stats(scored_dir, name).get("fingerprint")

"""Resume: a shard whose ``NAME_stats.json`` exists in the output is complete, and may be skipped only when the
settings that made it are the settings of this run, so one output folder never mixes two runs' decisions.

Every job's settings (``RunConfig``, ``SelectConfig``) answer ``fingerprint()``, ``output_settings()`` and
``settings_known()``.
"""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from . import storage
from .config import settings_difference
from .errors import ConfigError
from .shard.writer import output_paths
from .stats import Stats

# Complete shards whose settings the launcher reads before any work; the workers check every one they skip.
LAUNCH_CHECKS = 32


class SettingsMismatch(ValueError):
    def __init__(self, shard: str, recorded: dict | None, current: dict):
        changes = settings_difference(recorded, current) if recorded else ["no settings recorded"]
        super().__init__(
            f"shard {shard} was made with other settings ({'; '.join(changes[:3])}); pass --overwrite to redo "
            "every shard, or write to another --output"
        )


def shard_done(output_dir: str, name: str) -> bool:
    return storage.exists(output_paths(output_dir, name)["stats"])


def read_done_stats(output_dir: str, name: str, settings) -> Stats:
    """The stats of complete shard ``name``; raises SettingsMismatch when ``settings`` did not make it."""
    data = storage.read_bytes(output_paths(output_dir, name)["stats"])
    document = json.loads(data)
    if document.get("fingerprint") != settings.fingerprint():
        raise SettingsMismatch(name, document.get("settings"), settings.output_settings())
    return Stats.from_json(data)


def recorded_settings(settings) -> dict:
    """What a shard's stats record of the settings that made it, for a resumed job to compare."""
    return {"fingerprint": settings.fingerprint(), "settings": settings.output_settings()}


def complete_shards(names: list[str], output_dir: str, settings) -> list[str]:
    """The shards among ``names`` already complete in ``output_dir`` (one listing). Refuses (ConfigError) to
    resume when one of them (up to ``LAUNCH_CHECKS``, spread over the list) was made with other settings."""
    try:
        listed = FileSystems.match([output_dir.rstrip("/") + "/*_stats.json"])[0].metadata_list
    except Exception:  # no folder yet
        return []
    files = {m.path.rstrip("/").rsplit("/", 1)[-1] for m in listed}
    done = [name for name in names if f"{name}_stats.json" in files]
    if not settings.settings_known():  # dtype auto resolves on the workers only, and they check every shard
        return done
    for name in done[:: max(1, len(done) // LAUNCH_CHECKS)]:
        try:
            read_done_stats(output_dir, name, settings)
        except SettingsMismatch as exc:
            raise ConfigError(f"--output {output_dir}: {exc}") from None
    return done

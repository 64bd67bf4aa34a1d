"""The report's duplicate groups: each duplicate among the examples shown beside the copy kept in its place."""

from __future__ import annotations

from .. import storage
from ..shard.examples import thumbnail
from ..shard.reader import TarSamples
from ..shard.sample import IMAGE_EXTENSIONS
from .settings import SelectConfig


def with_kept_copies(examples: list[dict], config: SelectConfig) -> list[dict]:
    """``examples`` with a ``kept_copy`` (shard, key, thumbnail) beside each duplicate's; the kept copies'
    pictures are read from the scored tars (a few examples: one scan of a shard each)."""
    shown = []
    for example in examples:
        if example.get("duplicate_of"):
            shard, _, key = example["duplicate_of"].partition("/")
            example = {**example, "kept_copy": {"shard": shard, "key": key, "thumbnail": _picture(config, shard, key)}}
        shown.append(example)
    return shown


def _picture(config: SelectConfig, shard: str, key: str) -> str | None:
    with storage.open_raw(config.shard_path(shard)) as stream:
        for sample in TarSamples(stream, config.decode.max_member_bytes, config.video.max_member_bytes):
            if sample.key == key:
                found = sample.member(*IMAGE_EXTENSIONS)  # a clip's copy has no still to show
                sample.image_ext = found[0] if found else None
                return thumbnail(sample, config.decode.max_pixels)
    return None

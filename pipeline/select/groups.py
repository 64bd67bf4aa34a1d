"""The report's duplicate groups: each duplicate among the examples shown beside the copy kept in its place."""

from __future__ import annotations

from .. import storage
from ..shard.examples import thumbnail
from ..shard.reader import TarSamples
from ..shard.sample import IMAGE_EXTENSIONS
from .settings import SelectConfig

GROUPS_SHOWN = 4  # each costs a scan of the kept copy's scored shard, on the launcher, after the job


def with_kept_copies(examples: list[dict], config: SelectConfig) -> list[dict]:
    """``examples`` with a ``kept_copy`` (shard, key, thumbnail) beside the first ``GROUPS_SHOWN`` duplicates';
    the kept copies' pictures are read from the scored tars, each shard scanned once."""
    wanted = [e["duplicate_of"] for e in examples if e.get("duplicate_of")][:GROUPS_SHOWN]
    pictures: dict[str, str | None] = {}
    for shard in dict.fromkeys(name.partition("/")[0] for name in wanted):
        keys = {name.partition("/")[2] for name in wanted if name.partition("/")[0] == shard}
        pictures.update({f"{shard}/{key}": picture for key, picture in _pictures(config, shard, keys).items()})
    shown = []
    for example in examples:
        name = example.get("duplicate_of")
        if name in wanted:
            shard, _, key = name.partition("/")
            example = {**example, "kept_copy": {"shard": shard, "key": key, "thumbnail": pictures.get(name)}}
        shown.append(example)
    return shown


def _pictures(config: SelectConfig, shard: str, keys: set[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    with storage.open_raw(config.shard_path(shard)) as stream:
        for sample in TarSamples(stream, config.decode.max_member_bytes, config.video.max_member_bytes):
            if sample.key in keys:
                image = sample.member(*IMAGE_EXTENSIONS)  # a clip's copy has no still to show
                sample.image_ext = image[0] if image else None
                found[sample.key] = thumbnail(sample, config.decode.max_pixels)
                if len(found) == len(keys):
                    break
    return found

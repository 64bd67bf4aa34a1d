"""bench.feed measures the pipeline's own CPU side: every decodable picture made ready, on any thread count."""

import io
import tarfile

from PIL import Image

from bench.feed import feed, processor_owners
from tests.helpers import broken, sample_members, write_shard


def decodable_pictures(paths) -> int:
    """Samples whose image member Pillow decodes in full, counted from the tars without the pipeline's code."""
    count = 0
    for path in paths:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.rsplit(".", 1)[-1] in ("jpg", "png"):
                    try:
                        Image.open(io.BytesIO(tar.extractfile(member).read())).load()
                    except (OSError, Image.DecompressionBombError):
                        continue
                    count += 1
    return count


def test_feed_makes_every_decodable_picture_ready_on_one_or_more_threads(tiny_models, tmp_path):
    # Two shards of damaged samples (no image, undecodable, cut short, a pixel bomb), then ordinary ones: counting
    # samples rather than pictures, or losing the pictures still on the decode pool at a shard's end, shows.
    for shard, damaged in enumerate([["random_bytes", "jpeg_cut_short"], ["html_page", "pixel_bomb"]]):
        members = [(f"no_image_{shard}.txt", b"a caption without a picture")]
        for key in damaged:
            ext, data, _, _ = broken()[key]
            members += [(f"{key}.{ext}", data), (f"{key}.txt", b"a caption")]
        members += [m for i in range(5) for m in sample_members(f"s{shard}_{i}", f"a red square {i}")]
        write_shard(tmp_path / f"{shard:05d}.tar", members)
    paths = sorted(tmp_path.glob("*.tar"))
    expected = decodable_pictures(paths)
    assert expected == 10
    owners = processor_owners(list(tiny_models), "float32")
    made = {threads: feed(paths, owners, batch_size=4, threads=threads)[0] for threads in (1, 2)}
    assert made == {1: expected, 2: expected}

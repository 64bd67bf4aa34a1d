"""bench.feed measures the pipeline's own CPU side: every decodable picture made ready, on any thread count."""

from bench.feed import feed, processor_owners


def test_feed_makes_every_picture_ready_on_one_or_more_threads(tiny_models, shards):
    owners = processor_owners(list(tiny_models), "float32")
    for threads in (1, 2):
        images, seconds = feed(sorted(shards.glob("*.tar")), owners, batch_size=4, threads=threads)
        assert images == 12 and seconds > 0

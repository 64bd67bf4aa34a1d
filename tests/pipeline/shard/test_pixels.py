"""A run makes each picture's pixels once per distinct image processor, ahead of the models, never in the model
thread (where a GPU would wait for them), and on several threads when runtime.decode_threads asks."""

import threading
from collections import Counter

import pytest
from transformers import BlipProcessor, CLIPProcessor
from transformers.image_processing_utils import BaseImageProcessor

from tests.helpers import outputs, rows, run


@pytest.fixture
def processor_calls(monkeypatch):
    """(thread name, processor class, images) of every image-processor call in this process."""
    calls = []
    original = BaseImageProcessor.__call__

    def recorded(self, images, *args, **kwargs):
        count = len(images) if isinstance(images, list) else 1
        calls.append((threading.current_thread().name, type(self).__name__, count))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(BaseImageProcessor, "__call__", recorded)
    return calls


def _images_per_processor(calls) -> Counter:
    per_class = Counter()
    for _, name, count in calls:
        per_class[name] += count
    return per_class


@pytest.mark.parametrize("similarity", ["none", "itc", "clip"])
def test_each_picture_is_preprocessed_once_per_processor_in_the_prefetch_thread(
    tiny_models, tiny_clip, shards, tmp_path, processor_calls, similarity
):
    model = tiny_clip if similarity == "clip" else similarity
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", f"similarity.model={model}", "--set", "captioner.batch_size=4") == 0
    pictures = sum(r["status"] != "decode_error" for r in rows(out))
    assert pictures == 12
    # The captioner and the filter share one processor configuration; the ITC head reuses the filter's vision
    # pass; a CLIP model has a processor of its own.
    blip = type(BlipProcessor.from_pretrained(tiny_models[1]).image_processor).__name__
    expected = {blip: pictures}
    if similarity == "clip":
        expected[type(CLIPProcessor.from_pretrained(tiny_clip).image_processor).__name__] = pictures
    assert dict(_images_per_processor(processor_calls)) == expected
    assert {thread for thread, _, _ in processor_calls} == {"capfilt-prefetch"}


def test_without_prefetch_the_pixels_are_still_made_once(tiny_models, shards, tmp_path, processor_calls):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", "runtime.prefetch_batches=0") == 0
    assert sum(_images_per_processor(processor_calls).values()) == 12
    assert "capfilt-prefetch" not in {thread for thread, _, _ in processor_calls}


def test_decode_threads_share_the_work_and_change_no_byte(tiny_models, shards, tmp_path, processor_calls):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(tiny_models, shards, one, "--set", "runtime.decode_threads=1", "--set", "captioner.batch_size=4") == 0
    assert {thread for thread, _, _ in processor_calls} == {"capfilt-prefetch"}
    processor_calls.clear()
    assert run(tiny_models, shards, two, "--set", "runtime.decode_threads=2", "--set", "captioner.batch_size=4") == 0
    threads = {thread for thread, _, _ in processor_calls}
    assert threads and all(name.startswith("capfilt-decode") for name in threads)
    assert sum(_images_per_processor(processor_calls).values()) == 12
    assert outputs(two) == outputs(one)

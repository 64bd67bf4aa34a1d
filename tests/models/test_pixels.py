"""Pixels made ahead (``models.pixels``) give the models exactly what their own preprocessing gives."""

import torch
from PIL import Image

from capfilt.models.captioner import Captioner
from capfilt.models.itm import ItmScorer
from capfilt.models.pixels import image_pixels, processor_key
from capfilt.models.similarity import DualEncoder

IMAGES = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]


def test_models_see_the_pixels_made_ahead_not_the_images(tiny_models, tiny_clip):
    """Given pixels of other pictures, a model answers for those pictures: the pixels are what it looks at."""
    others = IMAGES[::-1]
    for prompt in ("a picture of", ""):
        captioner = Captioner.from_pretrained(tiny_models[0], prompt=prompt, num_captions=3, min_length=2, max_length=6)
        ahead = image_pixels(captioner.image_processor, others)
        assert captioner.caption(IMAGES, seed=5, pixel_values=ahead) == captioner.caption(others, seed=5)
    scorer = ItmScorer.from_pretrained(tiny_models[1], batch_size=1)  # pixels sliced per vision batch
    ahead = image_pixels(scorer.image_processor, others)
    assert torch.equal(scorer.vision_states(IMAGES, ahead), scorer.vision_states(others))
    assert not torch.equal(scorer.vision_states(IMAGES, ahead), scorer.vision_states(IMAGES))
    clip = DualEncoder.from_pretrained(tiny_clip, batch_size=1)
    ahead = image_pixels(clip.image_processor, others)
    assert torch.equal(clip.image_embeddings(IMAGES, pixel_values=ahead), clip.image_embeddings(others))
    assert not torch.equal(clip.image_embeddings(IMAGES, pixel_values=ahead), clip.image_embeddings(IMAGES))


def test_processor_key_tells_apart_processors_that_make_other_pixels(tiny_models, tiny_clip):
    captioner = Captioner.from_pretrained(tiny_models[0])
    scorer = ItmScorer.from_pretrained(tiny_models[1])
    clip = DualEncoder.from_pretrained(tiny_clip)
    # The tiny BLIP pair is saved with one processor configuration, as BLIP-base's captioner and filter are.
    assert processor_key(captioner.image_processor) == processor_key(scorer.image_processor)
    assert processor_key(clip.image_processor) != processor_key(scorer.image_processor)
    resized = type(scorer.image_processor)(**{**scorer.image_processor.to_dict(), "size": {"height": 8, "width": 8}})
    assert processor_key(resized) != processor_key(scorer.image_processor)

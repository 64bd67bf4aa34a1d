"""BLIP-2's matcher as the filter and its ITC head as the similarity model: scores equal the model's own forward
(``Blip2ForImageTextRetrieval``), with each image's vision pass shared by all its captions."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Blip2ForImageTextRetrieval

from capfilt.demo.training.tiny import save_random_blip2_itm
from capfilt.models import families
from capfilt.models.similarity import load_similarity
from tests.helpers import WORDS

CANDIDATES = [["a red circle", "a small blue square on the left"], ["green"], ["a large triangle", "right", "a"]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_random_blip2_itm(tmp_path_factory.mktemp("blip2_itm") / "itm", WORDS))


def images() -> list[Image.Image]:
    return [Image.new("RGB", (32 + 8 * i, 32), colour) for i, colour in enumerate([(200, 0, 0), (0, 90, 0), (9, 9, 9)])]


def own(path: str, image, texts: list[str], itm: bool) -> list[float]:
    """The model's own forward: the ITM head's match probability, or the ITC cosine (best over queries)."""
    model, processor = Blip2ForImageTextRetrieval.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    inputs = processor(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        output = model(**inputs, use_image_text_matching_head=itm)
    if itm:
        return torch.softmax(output.logits_per_image, dim=-1)[:, 1].tolist()
    return output.logits_per_image.diagonal().tolist()


def test_itm_scores_are_the_models_own_and_a_batch_equals_one_by_one(checkpoint):
    scorer = families.load("filter", checkpoint, device="cpu", batch_size=2)
    got = scorer.score(images(), CANDIDATES)
    for image, texts, scores in zip(images(), CANDIDATES, got, strict=True):
        assert scores == pytest.approx(own(checkpoint, image, texts, itm=True), abs=1e-5)
    alone = [scorer.score([image], [texts])[0] for image, texts in zip(images(), CANDIDATES, strict=True)]
    for batched, single in zip(got, alone, strict=True):
        assert batched == pytest.approx(single, abs=1e-6)
    assert scorer.calibrated and got == scorer.score(images(), CANDIDATES)


def test_itc_similarity_is_the_models_own_cosine_from_the_filters_vision_pass(checkpoint):
    scorer = families.load("filter", checkpoint, device="cpu")
    similarity = load_similarity("itc", scorer, batch_size=2)
    assert similarity.reuses_vision_of(scorer)
    states = scorer.vision_states(images())
    embeddings = similarity.embed(images(), CANDIDATES, vision_states=states)
    for i, (image, texts) in enumerate(zip(images(), CANDIDATES, strict=True)):
        expected = own(checkpoint, image, texts, itm=False)
        assert embeddings.similarities(i, texts) == pytest.approx(expected, abs=1e-5)
    # Loaded on its own, as similarity.model, it gives the same.
    alone = families.load("similarity", checkpoint, device="cpu")
    for apart, shared in zip(alone.score(images(), CANDIDATES), similarity.score(images(), CANDIDATES), strict=True):
        assert apart == pytest.approx(shared, abs=1e-6)

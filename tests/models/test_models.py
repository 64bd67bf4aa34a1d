import pytest
import torch
from PIL import Image
from transformers import BlipForImageTextRetrieval, BlipProcessor

from capfilt.models.captioner import Captioner
from capfilt.models.itm import ItmScorer

IMAGES = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]


@pytest.fixture(scope="module")
def captioner(tiny_models):
    return Captioner.from_pretrained(tiny_models[0], device="cpu", num_captions=3, min_length=2, max_length=6)


def test_captions_are_seeded_counted_and_prompt_free(captioner):
    first = captioner.caption(IMAGES, seed=11)
    assert len(first) == 2 and all(len(c) == 3 for c in first)
    assert first == captioner.caption(IMAGES, seed=11)
    assert first != captioner.caption(IMAGES, seed=12)
    # The prompt is given to the decoder but never returned as part of a caption.
    assert not any(c.startswith("a picture of") for caps in first for c in caps)
    # Lengths count generated tokens: at most max_length words from a word-level vocabulary.
    assert all(1 <= len(c.split()) <= 6 for caps in first for c in caps)


def test_no_prompt_starts_from_bos(tiny_models):
    plain = Captioner.from_pretrained(tiny_models[0], prompt="", num_captions=2, min_length=2, max_length=4)
    captions = plain.caption(IMAGES, seed=0)
    assert all(1 <= len(c.split()) <= 4 for caps in captions for c in caps)


def test_itm_scores_equal_hugging_face_forward(tiny_models):
    scorer = ItmScorer.from_pretrained(tiny_models[1], device="cpu", batch_size=2)
    candidates = [["a red circle", "blue", "on the left and right"], ["a small blue square"]]
    scores = scorer.score(IMAGES, candidates)
    model = BlipForImageTextRetrieval.from_pretrained(tiny_models[1]).eval()
    processor = BlipProcessor.from_pretrained(tiny_models[1])
    for image, texts, got in zip(IMAGES, candidates, scores):
        for text, value in zip(texts, got):
            with torch.inference_mode():
                logits = model(**processor(images=image, text=text, return_tensors="pt")).itm_score
            assert value == pytest.approx(torch.softmax(logits, -1)[0, 1].item(), abs=1e-5)


def test_itm_truncates_long_text_to_the_model_limit(tiny_models):
    scorer = ItmScorer.from_pretrained(tiny_models[1], max_text_tokens=8)
    long_text = " ".join(["a red circle on the left and"] * 1000)
    # 8 tokens: [CLS], the first six words, [SEP].
    [[score, six, five]] = scorer.score(IMAGES[:1], [[long_text, "a red circle on the left", "a red circle on the"]])
    assert score == pytest.approx(six, abs=1e-6)
    assert five != six  # one word fewer changes the score: the cut is exactly at the limit, not before it

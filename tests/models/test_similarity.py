import pytest
import torch
from PIL import Image
from transformers import BlipForImageTextRetrieval, BlipProcessor, CLIPModel, CLIPProcessor

from capfilt.models.itm import ItmScorer
from capfilt.models.similarity import DualEncoder, ItcSimilarity, load_similarity

IMAGES = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]
CANDIDATES = [["a red circle", "blue", "on the left and right"], ["a small blue square"]]


def test_clip_cosines_equal_hugging_face_forward(tiny_clip):
    scorer = DualEncoder.from_pretrained(tiny_clip, device="cpu", batch_size=2)
    got = scorer.score(IMAGES, CANDIDATES)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    for image, texts, values in zip(IMAGES, CANDIDATES, got, strict=True):
        inputs = processor(images=[image], text=texts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            # logits_per_image is the cosine times exp(logit_scale), CLIP's learned temperature
            cosines = model(**inputs).logits_per_image[0] / model.logit_scale.exp()
        assert values == pytest.approx(cosines.tolist(), abs=1e-5)
    assert scorer.dimension == model.config.projection_dim


def test_clip_pools_at_the_end_token_not_the_largest_id(tiny_clip):
    """CLIP reads a caption's embedding at its end token; a tiny model whose eos id were wrong would pool at the
    token with the largest id and give every caption sharing that word the same embedding."""
    scorer = DualEncoder.from_pretrained(tiny_clip, device="cpu")
    assert scorer.model.config.text_config.eos_token_id == scorer.processor.tokenizer.sep_token_id
    a, b = scorer.text_embeddings(["the red circle", "the blue circle"])
    assert not torch.allclose(a, b)


def test_itc_cosines_equal_hugging_face_forward_and_share_the_itm_vision_pass(tiny_models):
    itm = ItmScorer.from_pretrained(tiny_models[1], device="cpu", batch_size=2)
    itc = load_similarity("itc", itm, batch_size=2)
    assert itc.model is itm.model and itc.reuses_vision_of(itm)
    states = itm.vision_states(IMAGES)
    shared = itc.score(IMAGES, CANDIDATES, vision_states=states)
    alone = ItcSimilarity.from_pretrained(tiny_models[1], device="cpu").score(IMAGES, CANDIDATES)
    model = BlipForImageTextRetrieval.from_pretrained(tiny_models[1]).eval()
    processor = BlipProcessor.from_pretrained(tiny_models[1])
    for image, texts, from_states, from_images in zip(IMAGES, CANDIDATES, shared, alone, strict=True):
        for text, a, b in zip(texts, from_states, from_images, strict=True):
            inputs = processor(images=image, text=text, return_tensors="pt")
            with torch.inference_mode():
                expected = model(**inputs, use_itm_head=False).itm_score[0, 0].item()
            assert a == pytest.approx(expected, abs=1e-5)
            assert b == pytest.approx(expected, abs=1e-5)
    # The ITM scores are the same with or without the shared vision pass.
    assert itm.score(IMAGES, CANDIDATES, states) == itm.score(IMAGES, CANDIDATES)


def test_embeddings_are_unit_rows_whose_dot_products_are_the_scores(tiny_clip):
    scorer = DualEncoder.from_pretrained(tiny_clip, device="cpu")
    embeddings = scorer.embed(IMAGES, CANDIDATES)
    assert embeddings.images.shape == (2, scorer.dimension)
    assert embeddings.texts.shape == (4, scorer.dimension)
    assert torch.allclose(embeddings.images.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(embeddings.texts.norm(dim=1), torch.ones(4), atol=1e-6)
    for i, texts in enumerate(CANDIDATES):
        dots = [float(embeddings.images[i] @ embeddings.text(t)) for t in texts]
        assert embeddings.similarities(i, texts) == pytest.approx(dots, abs=1e-6)

"""Dual encoders (SigLIP, SigLIP 2, CLIP, MetaCLIP 2) as the filter and as the similarity model: tiny random
checkpoints saved and loaded by path, scored against what transformers alone computes."""

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

from capfilt.demo.training.tiny import save_random_metaclip2, save_random_siglip, save_random_siglip2
from capfilt.models import families
from capfilt.models.pixels import ImageInputs, image_pixels, joined, stacked
from capfilt.models.similarity import DualEncoder, DualEncoderFilter, load_similarity
from tests.helpers import WORDS

IMAGES = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]
IMAGES.append(Image.new("RGB", (30, 50), (20, 200, 20)))
CANDIDATES = [["a red circle", "blue", "on the left and right"], ["a small blue square"], ["green", "a large triangle"]]
SIGLIPS, CLIPS = ("siglip", "siglip2"), ("clip", "metaclip2")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory, tiny_clip) -> dict[str, str]:
    root = tmp_path_factory.mktemp("dual")
    return {
        "siglip": str(save_random_siglip(root / "siglip", WORDS)),
        "siglip2": str(save_random_siglip2(root / "siglip2", WORDS)),
        "clip": tiny_clip,
        "metaclip2": str(save_random_metaclip2(root / "metaclip2", WORDS)),
    }


def direct(path: str, image, texts: list[str], padding="max_length"):
    """transformers alone, as each model card scores: the model's logits for one image and its texts."""
    model, processor = AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    with torch.inference_mode():
        output = model(**processor(text=texts, images=[image], padding=padding, return_tensors="pt"))
    return model, output.logits_per_image[0]


@pytest.mark.parametrize("name", SIGLIPS)
def test_siglip_filter_scores_are_its_own_sigmoid_probability(encoders, name):
    scorer = families.load(families.FILTER, encoders[name], device="cpu")
    assert isinstance(scorer, DualEncoderFilter) and scorer.calibrated and scorer.max_text_tokens == 64
    # The tiny models carry a real temperature and bias, so a scorer that dropped either would not pass.
    assert scorer.model.logit_scale.exp().item() == pytest.approx(10) and scorer.model.logit_bias.item() == -2
    for image, texts, scores in zip(IMAGES, CANDIDATES, scorer.score(IMAGES, CANDIDATES), strict=True):
        _, logits = direct(encoders[name], image, texts)
        assert scores == pytest.approx(torch.sigmoid(logits).tolist(), abs=1e-5)


def test_siglip_reads_texts_padded_to_its_full_length(encoders):
    """Padding to the longest text gives SigLIP other scores (its text tower pools the last position)."""
    scorer = families.load(families.FILTER, encoders["siglip"], device="cpu")
    _, longest = direct(encoders["siglip"], IMAGES[0], CANDIDATES[0], padding="longest")
    assert scorer.score(IMAGES[:1], CANDIDATES[:1])[0] != pytest.approx(torch.sigmoid(longest).tolist(), abs=1e-3)


@pytest.mark.parametrize("name", CLIPS)
def test_a_filter_without_a_probability_scores_by_its_cosine(encoders, name):
    scorer = families.load(families.FILTER, encoders[name], device="cpu")
    assert not scorer.calibrated
    for image, texts, scores in zip(IMAGES, CANDIDATES, scorer.score(IMAGES, CANDIDATES), strict=True):
        model, logits = direct(encoders[name], image, texts, padding=True)
        assert scores == pytest.approx((logits / model.logit_scale.detach().exp()).tolist(), abs=1e-5)


@pytest.mark.parametrize("name", SIGLIPS + CLIPS)
def test_similarity_is_the_cosine_of_its_own_embeddings(encoders, name):
    similarity = families.load(families.SIMILARITY, encoders[name], device="cpu")
    assert type(similarity) is DualEncoder
    model, processor = AutoModel.from_pretrained(encoders[name]).eval(), AutoProcessor.from_pretrained(encoders[name])
    padding = "max_length" if name in SIGLIPS else "longest"
    for image, texts, values in zip(IMAGES, CANDIDATES, similarity.score(IMAGES, CANDIDATES), strict=True):
        tokens = processor.tokenizer(texts, padding=padding, return_tensors="pt")
        inputs = {key: tokens[key] for key in ("input_ids", "attention_mask") if key in tokens}
        with torch.inference_mode():
            text = model.get_text_features(**inputs).pooler_output
            picture = model.get_image_features(**processor.image_processor([image], return_tensors="pt")).pooler_output
        cosines = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(picture, dim=-1)[0]
        assert values == pytest.approx(cosines.tolist(), abs=1e-5)
    assert similarity.image_embeddings(IMAGES[:1]).shape == (1, similarity.dimension)


@pytest.mark.parametrize("name", SIGLIPS + CLIPS)
def test_a_batch_scores_as_each_image_alone(encoders, name):
    batched = families.load(families.FILTER, encoders[name], device="cpu", batch_size=8).score(IMAGES, CANDIDATES)
    scorer = families.load(families.FILTER, encoders[name], device="cpu", batch_size=1)
    alone = [scorer.score([image], [texts])[0] for image, texts in zip(IMAGES, CANDIDATES, strict=True)]
    for together, single in zip(batched, alone, strict=True):
        assert together == pytest.approx(single, abs=1e-6)


@pytest.mark.parametrize("name", ("siglip2", "clip"))
def test_a_clips_score_is_the_mean_over_its_frames(encoders, name):
    scorer = families.load(families.FILTER, encoders[name], device="cpu")
    texts = ["a red circle", "a small blue square"]
    frames = scorer.score(IMAGES[:2], [texts, texts])
    clip = scorer.score_clips([IMAGES[:2], IMAGES[2:]], [texts, ["green"]])
    assert clip[0] == pytest.approx([(a + b) / 2 for a, b in zip(*frames, strict=True)], abs=1e-6)
    assert clip[1] == pytest.approx(scorer.score(IMAGES[2:], [["green"]])[0], abs=1e-6)


def test_siglip2_pixels_made_ahead_travel_with_their_patch_mask_and_grid(encoders):
    scorer = families.load(families.FILTER, encoders["siglip2"], device="cpu", batch_size=2)
    pixels = image_pixels(scorer.image_processor, IMAGES)
    assert isinstance(pixels, ImageInputs) and len(pixels) == 3
    assert set(dict(pixels.items())) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    # Made in parts and rows, as the pipeline makes them ahead, they are what one call makes.
    parts = joined([image_pixels(scorer.image_processor, IMAGES[:1]), image_pixels(scorer.image_processor, IMAGES[1:])])
    rows = stacked([pixels[i] for i in range(3)])
    for made in (parts, rows):
        assert all(torch.equal(made.tensors[k], pixels.tensors[k]) for k in pixels.tensors)
    halved = pixels.to(torch.bfloat16)
    assert (
        halved.tensors["pixel_values"].dtype == torch.bfloat16 and halved.tensors["spatial_shapes"].dtype == torch.int64
    )
    assert torch.equal(scorer.vision_states(IMAGES, pixels), scorer.vision_states(IMAGES))


@pytest.mark.parametrize("name", ("siglip", "clip"))
def test_itc_of_a_dual_encoder_filter_is_its_own_cosine_sharing_its_vision_pass(encoders, name):
    scorer = families.load(families.FILTER, encoders[name], device="cpu")
    itc = load_similarity("itc", scorer)
    assert type(itc) is DualEncoder and itc.model is scorer.model and itc.reuses_vision_of(scorer)
    states = scorer.vision_states(IMAGES)
    shared = itc.embed(IMAGES, CANDIDATES, vision_states=states)
    alone = families.load(families.SIMILARITY, encoders[name], device="cpu").embed(IMAGES, CANDIDATES)
    assert torch.allclose(shared.images, alone.images, atol=1e-6) and torch.allclose(
        shared.texts, alone.texts, atol=1e-6
    )
    assert scorer.score(IMAGES, CANDIDATES, states) == scorer.score(IMAGES, CANDIDATES)


@pytest.mark.parametrize("name", SIGLIPS)
def test_a_text_longer_than_the_model_reads_is_scored_on_its_prefix(encoders, name):
    scorer = families.load(families.FILTER, encoders[name], device="cpu")
    tokenizer, limit = scorer.processor.tokenizer, scorer.max_text_tokens
    long = "red green blue " * 40
    kept = tokenizer(long, truncation=True, max_length=limit)["input_ids"]
    prefix = tokenizer.decode(kept, skip_special_tokens=True)
    assert tokenizer(prefix)["input_ids"] == kept  # the prefix is exactly what truncation leaves of the text
    assert scorer.token_counts([long, prefix]) == [len(tokenizer(long)["input_ids"]), limit]
    assert scorer.token_counts([long])[0] > limit
    long_score, prefix_score = scorer.score(IMAGES[:1], [[long, prefix]])[0]
    assert long_score == pytest.approx(prefix_score, abs=1e-6)

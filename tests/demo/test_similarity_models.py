"""The demo's similarity models: the tiny CLIP's training and checkpoint, the ITC head trained on the frozen filter,
and what the shipped ones do."""

import json
import random

import pytest
import torch
from transformers import BlipForImageTextRetrieval, BlipProcessor

from capfilt.demo import contrastive, world
from capfilt.demo.measure import best_threshold, similarity_figures
from capfilt.demo.training.clip import ClipEncoders, build_clip, clip_pairs, clip_pixels, save_clip
from capfilt.demo.training.itc import PROJECTIONS, ItcProjections, ItcRecipe, frozen_features, itm_digest, train_itc
from capfilt.demo.training.tiny import save_random_pair
from capfilt.models.loading import EMBEDDED_DIR
from capfilt.models.similarity import DualEncoder, ItcSimilarity

pytestmark = pytest.mark.usefixtures("one_thread")
TOKENIZER_DIR = EMBEDDED_DIR / "itm"
# models/embedded/itm/model.safetensors before its ITC head was trained: every tensor but vision_proj and text_proj
# (itc.itm_digest), taken from the file as the filter's training wrote it.
SHIPPED_ITM_DIGEST = "28a7a22cac8800a2e4584e42afa91e5829d1c22a788c46230ce73f0d2288fcdb"


def _clip_loss(encoders, images, ids) -> float:
    with torch.no_grad():
        loss = contrastive.info_nce(encoders.encode_images(images), encoders.encode_texts(ids), encoders.logit_scale)
    return loss.item()


def _trained_clip(images, ids, steps=12, seed=0):
    model, processor = build_clip(TOKENIZER_DIR, seed)
    encoders = ClipEncoders(model, processor)
    contrastive.fit(encoders, images, ids, steps, batch_size=8, lr=3e-3, seed=seed)
    return model, processor, encoders


def test_clip_steps_lower_the_loss_and_repeat_with_the_seed():
    model, processor = build_clip(TOKENIZER_DIR, 0)
    images, ids = clip_pairs(processor, 8, random.Random("test-clip"))
    before = _clip_loss(ClipEncoders(model, processor), images, ids)
    model, _, encoders = _trained_clip(images, ids)
    assert _clip_loss(encoders, images, ids) < 0.8 * before
    again, _, _ = _trained_clip(images, ids)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    other, _, _ = _trained_clip(images, ids, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_clip_trains_on_the_pixels_its_processor_gives_the_pipeline():
    """Training keeps images as uint8 and normalises per batch; that must be the processor's own output."""
    model, processor = build_clip(TOKENIZER_DIR, 0)
    _, images = world_images(3)
    encoders = ClipEncoders(model, processor)
    uint8 = clip_pixels(processor, images)
    mine = (uint8.float() * encoders.rescale - encoders.mean) / encoders.std
    theirs = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    assert torch.allclose(mine, theirs, atol=1e-5)
    assert model.config.text_config.eos_token_id == processor.tokenizer.sep_token_id


def world_images(count: int, seed: str = "test-clip-images"):
    rng = random.Random(seed)
    scenes = [world.sample_scene(rng) for _ in range(count)]
    return scenes, [world.render(scene) for scene in scenes]


def test_saved_clip_loads_by_path_and_scores_as_it_trained(tmp_path):
    model, processor = build_clip(TOKENIZER_DIR, 0)
    images, ids = clip_pairs(processor, 8, random.Random("test-clip"))
    model, processor, encoders = _trained_clip(images, ids, steps=4)
    save_clip(tmp_path / "clip", model, processor)
    scorer = DualEncoder.from_pretrained(str(tmp_path / "clip"), device="cpu")
    scenes, pictures = world_images(2)
    captions = [[world.canonical_caption(s), "a small red circle on the left on a green background"] for s in scenes]
    got = scorer.score(pictures, captions)
    tokens = processor.tokenizer([c for group in captions for c in group], padding=True, return_tensors="pt")
    with torch.no_grad():
        image_embeds = encoders.encode_images(clip_pixels(processor, pictures))
        text_embeds = encoders.encode_texts(tokens["input_ids"])
    expected = [(text_embeds[2 * i : 2 * i + 2] @ image_embeds[i]).tolist() for i in range(2)]
    for values, wanted in zip(got, expected):
        assert values == pytest.approx(wanted, abs=1e-5)


@pytest.fixture(scope="module")
def random_filter(tmp_path_factory):
    _, itm_dir = save_random_pair(tmp_path_factory.mktemp("pair"), list(world.VOCABULARY), image_size=32)
    return itm_dir


def test_itc_training_moves_the_projections_only_and_is_what_itc_scores(random_filter):
    model = BlipForImageTextRetrieval.from_pretrained(random_filter).eval()
    processor = BlipProcessor.from_pretrained(random_filter)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    digest = itm_digest(model.state_dict())
    vision, text = frozen_features(model, processor, 16, random.Random("test-itc"))
    head = ItcProjections(model)
    with torch.no_grad():
        before = contrastive.info_nce(head.encode_images(vision), head.encode_texts(text), head.logit_scale).item()
    train_itc(model, processor, 0, ItcRecipe(steps=20, batch_size=8, lr=1e-2, pairs=16))
    assert itm_digest(model.state_dict()) == digest
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, untouched[name]) != name.startswith(PROJECTIONS), name
    with torch.no_grad():
        after = contrastive.info_nce(head.encode_images(vision), head.encode_texts(text), head.logit_scale).item()
    assert after < before
    # The features it trains on are the ones the pipeline's ITC head projects.
    scenes, images = world_images(2)
    scorer = ItcSimilarity(model, processor)
    captions = [[world.canonical_caption(s)] for s in scenes]
    states = scorer.processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = model.vision_model(pixel_values=states).last_hidden_state[:, 0, :]
        tokens = processor.tokenizer([c[0] for c in captions], padding=True, return_tensors="pt")
        words = model.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        expected = (head.encode_images(cls) * head.encode_texts(words.last_hidden_state[:, 0, :])).sum(1)
    assert [s[0] for s in scorer.score(images, captions)] == pytest.approx(expected.tolist(), abs=1e-5)


def test_itm_digest_sees_every_tensor_but_the_projections(random_filter):
    tensors = BlipForImageTextRetrieval.from_pretrained(random_filter).state_dict()
    digest = itm_digest(tensors)
    assert itm_digest({**tensors, "vision_proj.weight": tensors["vision_proj.weight"] + 1}) == digest
    changed = tensors["itm_head.bias"].clone()
    changed[0] = torch.nextafter(changed[0], torch.tensor(1.0))
    assert itm_digest({**tensors, "itm_head.bias": changed}) != digest


def test_shipped_filter_is_the_trained_one_but_for_its_itc_head():
    """Training the ITC head must leave every tensor the ITM head reads as the filter's training wrote it, so the
    shipped demo's ITM decisions are those of before."""
    assert itm_digest(EMBEDDED_DIR / "itm" / "model.safetensors") == SHIPPED_ITM_DIGEST


def test_shipped_clip_prefers_the_right_caption_to_a_one_word_change():
    scorer = DualEncoder.from_pretrained("embedded:clip", device="cpu")
    rng = random.Random("test-shipped-clip")  # no training stream draws from this seed
    scenes = [world.sample_scene(rng) for _ in range(48)]
    candidates = [[world.canonical_caption(s), world.one_word_off(s, rng)] for s in scenes]
    scores = scorer.score([world.render(s) for s in scenes], candidates)
    # One-word changes are a contrastive model's hard case: the shipped CLIP ranks 40 of these 48 right; chance is
    # half.
    assert sum(right > wrong for right, wrong in scores) >= 0.75 * len(scores), scores


def test_similarity_figures_rank_right_captions_and_place_the_cut_between():
    truth = "a small red circle on the left on a green background"
    meta = json.dumps({"gt_caption": truth, "noise": "correct"})
    rows = [
        {"web_text": truth, "synthetic_texts": ["a small blue circle on the left on a green background"], "json": meta},
        {"web_text": "free shipping", "synthetic_texts": [truth, truth], "json": meta},
    ]
    figures = similarity_figures(rows, [0.9, 0.2], [[0.5], [0.8, 0.7]])
    assert figures["auc"] == 1.0 and figures["pairs"] == 5
    assert figures["correct_mean"] == pytest.approx(0.8) and figures["wrong_mean"] == pytest.approx(0.35)
    assert 0.5 < figures["threshold"] <= 0.7 and figures["correct_pass"] == figures["wrong_reject"] == 1.0
    # Of the cuts that separate equally well, the lowest.
    assert best_threshold([0.3, 0.6], [0.4]) == 0.6
    assert best_threshold([0.9, 0.8], [0.1, 0.85]) == 0.8

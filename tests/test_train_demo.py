"""The demo-model training script, and the quality of the models shipped in models/demo."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from capfilt.demo import train as train_demo
from capfilt.demo import world as world
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipProcessor

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "demo"


def test_caption_labels_match_what_generate_feeds_the_decoder():
    processor, _, _ = train_demo.build_models(seed=0)
    tokenizer = processor.tokenizer
    _, input_ids, attention_mask, labels = train_demo.caption_batch(processor, random.Random(0), 4)
    assert (input_ids[:, 0] == tokenizer.bos_token_id).all()
    prompt = tokenizer(world.PROMPT).input_ids[1:-1]  # without [CLS] and [SEP]
    assert (input_ids[:, 1 : 1 + len(prompt)] == torch.tensor(prompt)).all()
    assert (labels[:, : 1 + len(prompt)] == -100).all()
    assert ((labels == -100) | (labels == input_ids)).all()
    assert ((attention_mask == 0) <= (labels == -100)).all()
    # Every caption ends in [SEP], which is a label: the model learns to stop.
    lengths = attention_mask.sum(1)
    assert (labels[torch.arange(4), lengths - 1] == tokenizer.sep_token_id).all()


def test_negative_captions_are_always_wrong():
    rng = random.Random(0)
    for _ in range(500):
        scene = world.sample_scene(rng)
        assert world.normalise(train_demo.negative_caption(scene, rng)) != world.canonical_caption(scene)


def test_position_table_tells_rows_from_columns():
    side = 8
    table = train_demo.sincos_positions(side * side + 1, 128)[0]
    assert torch.count_nonzero(table[0]) == 0  # the class token has no place in the grid
    patches = table[1:].reshape(side, side, -1)
    for row in range(side):
        for col in range(side):
            if row != col:
                # "right" (row 3, col 6) and "bottom" (row 6, col 3) must look different to the model.
                assert not torch.allclose(patches[row, col], patches[col, row])
    assert len({tuple(v.tolist()) for v in table[1:]}) == side * side


def test_hardest_changes_are_the_near_misses_the_filter_scores_highest():
    processor, _, itm = train_demo.build_models(seed=0)
    itm.eval()
    scenes, images = train_demo.draw_images(random.Random(3), 4)
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = itm.vision_model(pixel_values=pixel_values).last_hidden_state
    hardest = train_demo.hardest_changes(itm, processor.tokenizer, scenes, embeds, random.Random(7))
    rng = random.Random(7)  # the same draws, scored image by image through the HF forward the pipeline calls
    for scene, image, chosen in zip(scenes, images, hardest):
        options = [world.canonical_caption(world.perturb_scene(scene, rng, f)) for f in world.FACTORS]
        inputs = processor(images=[image] * len(options), text=options, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = itm(**inputs, use_itm_head=True).itm_score
        margins = (logits[:, 1] - logits[:, 0]).tolist()
        best, runner_up = sorted(margins)[-1], sorted(margins)[-2]
        assert best - runner_up > 1e-4  # an untrained filter, but its margins still tell the options apart
        assert chosen == options[margins.index(best)]
        truth = world.canonical_caption(scene).split()
        assert sum(a != b for a, b in zip(chosen.split(), truth)) == 1


def test_word_targets_mark_the_wrong_words_of_aligned_captions():
    processor, _, _ = train_demo.build_models(seed=0)
    truth = "a small red circle on the left on a green background"
    texts = [
        truth,
        "a small blue circle on the left on a green background",  # one word off
        "a large red square on the left on a grey background",  # three words off
        "a small red circle on a green background",  # not aligned: ignored
        "free shipping",  # not aligned: ignored
    ]
    encoded = processor.tokenizer(texts, padding=True, return_tensors="pt")
    targets = train_demo.word_targets(texts, [truth] * len(texts), encoded.input_ids)
    n = len(truth.split())
    assert targets[0, 1 : n + 1].tolist() == [1] * n
    assert targets[1, 1 : n + 1].tolist() == [0 if w == "blue" else 1 for w in texts[1].split()]
    assert targets[2, 1 : n + 1].tolist().count(0) == 3
    assert (targets[3:] == -100).all()
    assert (targets[:, 0] == -100).all() and (targets[:, n + 1 :] == -100).all()  # [CLS], [SEP], padding


def test_mask_words_hides_words_only_and_keeps_them_as_targets():
    processor, _, _ = train_demo.build_models(seed=0)
    tokenizer = processor.tokenizer
    texts = [
        "a small red circle on the left on a green background",
        "a large blue cross on the top on a red background",
    ]
    texts += ["a red"]  # two words: whatever the draws, one of them is masked
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    masked, targets = train_demo.mask_words(
        encoded.input_ids, encoded.attention_mask, tokenizer.mask_token_id, 0.25, random.Random(0)
    )
    hidden = targets != -100
    assert (masked[hidden] == tokenizer.mask_token_id).all()
    assert (targets[hidden] == encoded.input_ids[hidden]).all()
    assert (masked[~hidden] == encoded.input_ids[~hidden]).all()
    assert hidden.sum(1).min() >= 1  # every caption has a word to predict
    special = (encoded.input_ids == tokenizer.cls_token_id) | (encoded.input_ids == tokenizer.sep_token_id)
    assert not (hidden & (special | (encoded.attention_mask == 0))).any()


def test_a_few_steps_save_models_that_load_by_path(tmp_path):
    out = tmp_path / "demo"
    args = ["--output", str(out), "--steps", "2", "--batch-size", "4", "--eval-samples", "4"]
    args += ["--itm-mistake-images", "4", "--itm-mistakes-per-batch", "2", "--itm-word-loss", "1", "--itm-mined"]
    args += ["--itm-mlm-loss", "1"]
    assert train_demo.main(args) == 0
    assert "## Measured on fresh demo data" in (out / "README.md").read_text()
    for name in ("captioner", "itm"):
        assert (out / name / "model.safetensors").is_file()
    processor = BlipProcessor.from_pretrained(out / "captioner")
    captioner = BlipForConditionalGeneration.from_pretrained(out / "captioner").eval()
    itm = BlipForImageTextRetrieval.from_pretrained(out / "itm").eval()
    scene = world.sample_scene(random.Random(5))
    image = world.render(scene)
    captions = train_demo.generate_captions(captioner, processor, [image], num_captions=2, top_p=0.9, seed=0)
    assert len(captions) == 1 and len(captions[0]) == 2 and all(isinstance(c, str) for c in captions[0])
    # The pipeline calls the HF forward; it must agree with the training-time shortcut.
    inputs = processor(images=image, text=world.canonical_caption(scene), return_tensors="pt")
    with torch.no_grad():
        full = itm(**inputs, use_itm_head=True).itm_score.softmax(-1)[0, 1].item()
    (score,) = train_demo.score_pairs(itm, processor, [image], [[world.canonical_caption(scene)]])[0]
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(full, abs=1e-5)


@pytest.mark.skipif(not (SHIPPED / "itm" / "model.safetensors").is_file(), reason="demo models not trained")
def test_shipped_models_hold_their_measured_quality():
    """Issue 3's goals on a fresh seed of demo data (models/demo/README.md measures kept accuracy 0.984,
    clean yield 0.982 on another seed)."""
    processor, captioner, itm = train_demo.load_models(SHIPPED)
    metrics = train_demo.evaluate_models(captioner, itm, processor, samples=128, seed=424242)
    evaluation = metrics["evaluation"]
    assert evaluation["web_accuracy"] < 0.55  # the data really is noisy
    assert evaluation["kept_accuracy"] >= 0.95, train_demo.format_metrics(metrics)
    assert evaluation["clean_yield"] >= 0.90, train_demo.format_metrics(metrics)
    assert metrics["caption_exact"] >= 0.95
    assert metrics["itm"]["correct_pass"] >= 0.95 and metrics["itm"]["wrong_reject"] >= 0.6
    rows = {r["name"]: r for r in metrics["ablation"]}
    assert rows["filter"]["accuracy"] > rows["none"]["accuracy"]
    assert rows["captioner"]["clean_yield"] > rows["none"]["clean_yield"]
    assert rows["capfilt"]["accuracy"] > rows["none"]["accuracy"]
    # BLIP Table 1's last row is best: on this seed CapFilt keeps a right caption for every image (1.000 / 1.000)
    # where the captioner alone is right for 0.977 of them.
    assert rows["capfilt"]["accuracy"] > rows["captioner"]["accuracy"]
    assert rows["capfilt"]["clean_yield"] > rows["captioner"]["clean_yield"]
    assert rows["capfilt"]["clean_yield"] > rows["none"]["clean_yield"]
    sizes = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert sizes <= 20e6

"""The demo-model training (capfilt.demo.training), its measurement (capfilt.demo.measure), and the quality of the
models shipped in models/embedded."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest
import torch
import transformers
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipProcessor

from capfilt.demo import world
from capfilt.demo.measure import (
    demo_captioner,
    demo_sample,
    format_metrics,
    load_models,
    load_similarities,
    measure_models,
)
from capfilt.demo.training import __main__ as training
from capfilt.demo.training.build import build_models, sincos_positions
from capfilt.demo.training.card import model_card, model_size
from capfilt.demo.training.data import caption_batch, draw_images, mask_words, negative_caption, word_targets
from capfilt.demo.training.loops import hardest_changes
from capfilt.demo.training.tiny import save_random_pair
from capfilt.models.itm import ItmScorer, grounded_text_states, match_logits
from capfilt.models.loading import EMBEDDED_DIR
from capfilt.models.similarity import DualEncoder

SHIPPED = EMBEDDED_DIR


def test_caption_labels_match_what_generate_feeds_the_decoder():
    processor, _, _ = build_models(seed=0)
    tokenizer = processor.tokenizer
    _, input_ids, attention_mask, labels = caption_batch(processor, random.Random(0), 4)
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
        assert world.normalise(negative_caption(scene, rng)) != world.canonical_caption(scene)


def test_position_table_tells_rows_from_columns():
    side = 8
    table = sincos_positions(side * side + 1, 128)[0]
    assert torch.count_nonzero(table[0]) == 0  # the class token has no place in the grid
    patches = table[1:].reshape(side, side, -1)
    for row in range(side):
        for col in range(side):
            if row != col:
                # "right" (row 3, col 6) and "bottom" (row 6, col 3) must look different to the model.
                assert not torch.allclose(patches[row, col], patches[col, row])
    assert len({tuple(v.tolist()) for v in table[1:]}) == side * side


def test_hardest_changes_are_the_near_misses_the_filter_scores_highest():
    processor, _, itm = build_models(seed=0)
    itm.eval()
    scenes, images = draw_images(random.Random(3), 4)
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = itm.vision_model(pixel_values=pixel_values).last_hidden_state
    hardest = hardest_changes(itm, processor.tokenizer, scenes, embeds, random.Random(7))
    rng = random.Random(7)  # the same draws, scored image by image through the HF forward
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
    processor, _, _ = build_models(seed=0)
    truth = "a small red circle on the left on a green background"
    texts = [
        truth,
        "a small blue circle on the left on a green background",  # one word off
        "a large red square on the left on a grey background",  # three words off
        "a small red circle on a green background",  # not aligned: ignored
        "free shipping",  # not aligned: ignored
    ]
    encoded = processor.tokenizer(texts, padding=True, return_tensors="pt")
    targets = word_targets(texts, [truth] * len(texts), encoded.input_ids)
    n = len(truth.split())
    assert targets[0, 1 : n + 1].tolist() == [1] * n
    assert targets[1, 1 : n + 1].tolist() == [0 if w == "blue" else 1 for w in texts[1].split()]
    assert targets[2, 1 : n + 1].tolist().count(0) == 3
    assert (targets[3:] == -100).all()
    assert (targets[:, 0] == -100).all() and (targets[:, n + 1 :] == -100).all()  # [CLS], [SEP], padding


def test_mask_words_hides_words_only_and_keeps_them_as_targets():
    processor, _, _ = build_models(seed=0)
    tokenizer = processor.tokenizer
    texts = [
        "a small red circle on the left on a green background",
        "a large blue cross on the top on a red background",
    ]
    texts += ["a red"]  # two words: whatever the draws, one of them is masked
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    masked, targets = mask_words(
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
    args += ["--itm-mlm-loss", "1", "--itc-steps", "2", "--itc-pairs", "8", "--itc-batch-size", "4"]
    args += ["--clip-steps", "2", "--clip-pairs", "8", "--clip-batch-size", "4"]
    assert training.main(args) == 0
    card = (out / "README.md").read_text()
    assert "## Measured on fresh demo data" in card
    assert re.search(r"^itc +\d\.\d{4} ", card, re.M) and re.search(r"^clip +\d\.\d{4} ", card, re.M)
    for name in ("captioner", "itm", "clip"):
        assert (out / name / "model.safetensors").is_file()
    # The CLIP loads by path as the pipeline loads any CLIP checkpoint, with the filter's tokenizer.
    clip = DualEncoder.from_pretrained(str(out / "clip"), device="cpu")
    assert clip.processor.tokenizer.get_vocab() == BlipProcessor.from_pretrained(out / "itm").tokenizer.get_vocab()
    ((cosine, other),) = clip.score([world.render(world.sample_scene(random.Random(6)))], [["a red circle", "a"]])
    assert -1.0 <= cosine <= 1.0 and cosine != other
    captioner, scorer = load_models(out, num_captions=2, top_p=0.9)
    scene = world.sample_scene(random.Random(5))
    image = world.render(scene)
    captions = captioner.caption([image], seed=0)
    assert len(captions) == 1 and len(captions[0]) == 2 and all(isinstance(c, str) for c in captions[0])
    # The scorer the measurement uses must agree with the HF forward of the saved filter.
    itm = BlipForImageTextRetrieval.from_pretrained(out / "itm").eval()
    processor = BlipProcessor.from_pretrained(out / "captioner")
    inputs = processor(images=image, text=world.canonical_caption(scene), return_tensors="pt")
    with torch.no_grad():
        full = itm(**inputs, use_itm_head=True).itm_score.softmax(-1)[0, 1].item()
    ((score,),) = scorer.score([image], [[world.canonical_caption(scene)]])
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(full, abs=1e-5)


def test_shared_itm_layer_is_the_hugging_face_itm_forward(tiny_models):
    """The training forward (grounded_text_states + match_logits, with gradients) and ItmScorer's are one
    function; it must be the HF ``use_itm_head=True`` forward, padding and repeated images included."""
    model = BlipForImageTextRetrieval.from_pretrained(tiny_models[1]).eval()
    processor = BlipProcessor.from_pretrained(tiny_models[1])
    images = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]
    texts = ["a red circle", "blue", "a small blue square on the left and the right", "green"]
    index = torch.tensor([0, 0, 1, 1])
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    encoded = processor.tokenizer(texts, padding=True, return_tensors="pt")
    embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    logits = match_logits(model, grounded_text_states(model, embeds[index], encoded.input_ids, encoded.attention_mask))
    assert logits.requires_grad  # usable for training, unlike ItmScorer.score
    shared = logits.softmax(-1)[:, 1].tolist()
    for k, text in enumerate(texts):
        with torch.no_grad():
            inputs = processor(images=images[index[k]], text=text, return_tensors="pt")
            full = model(**inputs, use_itm_head=True).itm_score.softmax(-1)[0, 1].item()
        assert shared[k] == pytest.approx(full, abs=1e-5)


def test_measurement_reports_the_captions_the_pipelines_captioner_writes(tmp_path):
    """measure_models captions through annotate.caption_batch: its rows hold exactly what Captioner.caption gives
    the same images with the batch's seed (``seed + start``)."""
    captioner_dir, itm_dir = save_random_pair(tmp_path, list(world.VOCABULARY), image_size=32)
    model = BlipForConditionalGeneration.from_pretrained(captioner_dir).eval()
    captioner = demo_captioner(model, BlipProcessor.from_pretrained(captioner_dir), num_captions=3)
    scorer = ItmScorer.from_pretrained(str(itm_dir), device="cpu")
    metrics = measure_models(captioner, scorer, samples=6, seed=77, batch_size=4)
    rng = random.Random("capfilt-eval/77")  # the measurement's own stream of fresh samples
    samples = [demo_sample(f"eval_{i:06d}", rng, 0.4, None) for i in range(6)]
    expected = captioner.caption([s.image for s in samples[:4]], seed=77)
    expected += captioner.caption([s.image for s in samples[4:]], seed=81)
    assert [row["key"] for row in metrics["rows"]] == [s.key for s in samples]
    assert [row["synthetic_texts"] for row in metrics["rows"]] == [[c for c in cs if c] for cs in expected]
    assert metrics["settings"] == {"num_captions": 3, "top_p": 0.9, "threshold": 0.5}


# The old single-module trainer (models/train_demo.py at commit ec693d5) run as
#   python -m models.train_demo --output OUT --steps 3 --itm-mistake-images 8 --itm-mistakes-per-batch 2
#     --eval-samples 0
# wrote these weights. They are a floor written down from the old code: the split must train the same bytes.
# Float kernels differ between CPU families and library versions, so they hold only where they were taken.
OLD_CODE_HASHES = {
    "captioner": "37ba206bb3dcf604f0551062274b14e12790f4d8639d1bbf4467fa801227f8ee",
    "itm": "5598e071981dadde311011e7aae69acca3daf6c53741bf5fa1ded13c9754518d",
}
# Where the hashes were taken, and where they were checked since (transformers 5.24.0: same bytes).
HASHES_HOLD_ON = {("2.13.0+cpu", "5.23.0", "AVX512", True), ("2.13.0+cpu", "5.24.0", "AVX512", True)}


def _this_machine() -> tuple:
    try:
        native_bfloat16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        native_bfloat16 = False
    return torch.__version__, transformers.__version__, torch.backends.cpu.get_cpu_capability(), native_bfloat16


@pytest.mark.skipif(
    _this_machine() not in HASHES_HOLD_ON, reason=f"reference weights were checked only on {sorted(HASHES_HOLD_ON)}"
)
def test_training_writes_the_same_weights_as_the_old_code(tmp_path):
    out = tmp_path / "demo"
    args = ["--output", str(out), "--steps", "3", "--itm-mistake-images", "8", "--itm-mistakes-per-batch", "2"]
    # The old code had no ITC or CLIP stage: the filter's file is the old one only without the ITC training
    # (test_similarity_models checks that stage moves nothing but the projections).
    assert training.main([*args, "--eval-samples", "0", "--itc-steps", "0", "--clip-steps", "0"]) == 0
    for name, expected in OLD_CODE_HASHES.items():
        assert hashlib.sha256((out / name / "model.safetensors").read_bytes()).hexdigest() == expected, name


def test_shipped_card_is_what_the_card_writer_writes():
    """models/embedded/README.md, but for its one hand-written line on how the shipped run was made, is what
    card.py writes for the recipe and seconds it states: a retrain regenerates it."""
    shipped = (SHIPPED / "README.md").read_text()
    command = re.search(r"`python -m capfilt\.demo\.training ([^`]*)`", shipped).group(1)
    stages = re.search(r"seconds: ([^(]*) \(", shipped).group(1)
    seconds = {name: float(value) for name, value in re.findall(r"(\w+) (\d+)", stages)}
    assert set(seconds) == {"captioner", "itm", "itc", "clip", "total"}
    measured = shipped.split("```\n")[1].rstrip("\n")
    sizes = {name: model_size(SHIPPED / name) for name in ("captioner", "itm", "clip")}
    card = model_card(training.parse_args(command.split()), seconds, sizes, measured)
    assert card == "".join(line for line in shipped.splitlines(keepends=True) if not line.startswith("- made in"))


def test_shipped_models_hold_their_measured_quality():
    """Issue 3's goals on a fresh seed of demo data (models/embedded/README.md measures kept accuracy 0.984,
    clean yield 0.982 on another seed). Never skipped: the checkpoints ship with the package, so a missing file
    (as after a move) is a failure."""
    captioner, scorer = load_models(SHIPPED)
    similarities = load_similarities(SHIPPED, scorer)
    metrics = measure_models(captioner, scorer, samples=128, seed=424242, similarities=similarities)
    evaluation = metrics["evaluation"]
    assert evaluation["web_accuracy"] < 0.55  # the data really is noisy
    assert evaluation["kept_accuracy"] >= 0.95, format_metrics(metrics)
    assert evaluation["clean_yield"] >= 0.90, format_metrics(metrics)
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
    # Issue 17: both similarity backends rank right captions above wrong ones (the model card: AUC 0.871 for the
    # CLIP, 0.769 for the ITC head on linear maps over frozen towers), and the ITM head stays ahead of both.
    similarity = metrics["similarity"]
    assert similarity["clip"]["auc"] >= 0.8 and similarity["itc"]["auc"] >= 0.7, format_metrics(metrics)
    assert metrics["itm"]["auc"] > similarity["clip"]["auc"] > similarity["itc"]["auc"]
    for figures in similarity.values():
        assert figures["correct_mean"] > figures["wrong_mean"] + 0.2
    sizes = sum(f.stat().st_size for name in ("captioner", "itm", "clip") for f in (SHIPPED / name).iterdir())
    assert sizes <= 20e6

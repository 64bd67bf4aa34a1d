"""The demo-vlm pair (a tiny LLaVA-shaped captioner and a tiny SigLIP filter): its training code, the shipped
checkpoints' quality, and `capfilt run demo-vlm` end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import BlipForConditionalGeneration, BlipProcessor

from capfilt.cli import main
from capfilt.demo import world
from capfilt.demo.measure import format_metrics
from capfilt.demo.training import vlm_pair
from capfilt.demo.training.data import draw_images
from capfilt.demo.training.siglip import build_filter, pair_labels
from capfilt.demo.training.tiny import save_random_pair
from capfilt.demo.training.vlm import INSTRUCTION, build_captioner, caption_batch
from capfilt.models import families
from capfilt.models.loading import EMBEDDED_DIR
from capfilt.models.similarity import DualEncoderFilter
from capfilt.models.vlm_captioner import VlmCaptioner
from tests.helpers import run_in_empty_folder

SMALL = dict(hidden=32, layers=1)


def test_captioner_trains_on_the_prompt_the_pipeline_gives_it():
    """Teacher forcing must feed the decoder what ``VlmCaptioner`` prompts with, and put the loss on the caption
    and the end token only."""
    _, processor = build_captioner(seed=0, **SMALL)
    inputs, labels = caption_batch(processor, random.Random(0), 4)
    scenes, images = draw_images(random.Random(0), 4)  # the batch's own draws
    prompt = VlmCaptioner.prompt_text(processor, "", INSTRUCTION)
    prompt_ids = processor(images=images[:1], text=[prompt], return_tensors="pt").input_ids[0]
    n = len(prompt_ids)
    assert (inputs.input_ids[:, :n] == prompt_ids).all()
    assert (labels[:, :n] == -100).all()
    eos = processor.tokenizer.eos_token_id
    for row, scene in enumerate(scenes):
        taught = labels[row][labels[row] != -100]
        assert taught[-1] == eos
        assert processor.tokenizer.decode(taught[:-1]) == world.canonical_caption(scene)
        assert (inputs.input_ids[row, n : n + len(taught)] == taught).all()


def test_filter_starts_from_the_captioners_vision_encoder_with_siglips_temperature_and_bias():
    captioner, _ = build_captioner(seed=0, **SMALL)
    model, processor = build_filter(captioner, seed=1, **SMALL)
    copied = model.vision_model.state_dict()
    for name, tensor in captioner.model.vision_tower.state_dict().items():
        assert torch.equal(copied[name], tensor), name
    assert model.logit_scale.exp().item() == pytest.approx(10.0)
    assert model.logit_bias.item() == pytest.approx(-10.0)
    assert processor.tokenizer.model_input_names == ["input_ids"]  # SigLIP reads no attention mask


def test_a_blip_vision_tower_computes_the_same_in_the_captioners_siglip_tower(tmp_path):
    """The captioner starts from the BLIP captioner's vision tower (``vision_from_blip``): every BLIP weight but
    the class token lands, and each encoder layer computes what BLIP's does on the same patches."""
    blip_dir, _ = save_random_pair(tmp_path, list(world.VOCABULARY), image_size=64)
    blip = BlipForConditionalGeneration.from_pretrained(blip_dir).vision_model.eval()
    captioner, processor = build_captioner(seed=0, hidden=32, layers=2, vision_from=blip_dir)
    tower = captioner.model.vision_tower.eval()
    assert torch.equal(tower.embeddings.position_embedding.weight, blip.embeddings.position_embedding[0, 1:])
    assert torch.equal(tower.embeddings.patch_embedding.weight, blip.embeddings.patch_embedding.weight)
    states = torch.randn(2, 64, 32)
    with torch.no_grad():
        for ours, theirs in zip(tower.encoder.layers, blip.encoder.layers, strict=True):
            mine, blips = ours(states, attention_mask=None), theirs(states)
            mine, blips = (out[0] if isinstance(out, tuple) else out for out in (mine, blips))
            assert torch.allclose(mine, blips, atol=1e-5)
    # The pair's pixels are the BLIP processor's, which the tower was trained on.
    image = world.render(world.sample_scene(random.Random(3)))
    blip_pixels = BlipProcessor.from_pretrained(blip_dir)(images=image, return_tensors="pt").pixel_values
    assert torch.allclose(processor(images=image, text="<image>", return_tensors="pt").pixel_values, blip_pixels)


def test_a_text_made_for_another_image_is_a_match_when_the_scenes_agree():
    truths = ["a red circle", "a blue square", "a red circle"]
    texts = ["a red circle", "a red square", "a blue square", "a Red circle"]
    match, own = pair_labels(truths, texts, rows=[0, 0, 1, 2])
    assert match.tolist() == [[True, False, False, True], [False, False, True, False], [True, False, False, True]]
    assert own.tolist() == [[True, True, False, False], [False, False, True, False], [False, False, False, True]]


def test_a_few_steps_save_a_pair_each_family_loads_in_its_role(tmp_path):
    out = tmp_path / "pair"
    args = ["--output", str(out), "--caption-steps", "2", "--batch-size", "4", "--filter-steps", "2"]
    args += ["--filter-batch-size", "4", "--filter-mistake-images", "4", "--filter-mistakes-per-batch", "2"]
    assert vlm_pair.main([*args, "--eval-samples", "4"]) == 0
    card = (out / "vlm-captioner" / "README.md").read_text()
    assert "## Measured on fresh demo data" in card and "--filter-steps 2" in card
    captioner = families.load(families.CAPTIONER, str(out / "vlm-captioner"), device="cpu", num_captions=2)
    scorer = families.load(families.FILTER, str(out / "siglip"), device="cpu")
    assert isinstance(captioner, VlmCaptioner) and isinstance(scorer, DualEncoderFilter) and scorer.calibrated
    image = world.render(world.sample_scene(random.Random(5)))
    assert len(captioner.caption([image], seed=0)[0]) == 2
    ((score,),) = scorer.score([image], [["a red circle"]])
    assert 0.0 < score < 1.0


def shipped_pair():
    """The shipped pair loaded by path with the demo-vlm pipeline's settings (``vlm_pair.measure``)."""
    return vlm_pair.measure(EMBEDDED_DIR, samples=128, seed=424242)


def test_shipped_vlm_pair_reaches_what_the_blip_pair_reaches():
    """The goals of the demo on a fresh seed of demo data (the model card measures another seed): kept-caption
    accuracy >= 0.95, clean yield >= 0.90, and BLIP Table 1's order."""
    metrics = shipped_pair()
    evaluation = metrics["evaluation"]
    assert evaluation["web_accuracy"] < 0.55
    assert evaluation["kept_accuracy"] >= 0.95, format_metrics(metrics)
    assert evaluation["clean_yield"] >= 0.90, format_metrics(metrics)
    assert metrics["caption_exact"] >= 0.95  # the model card: 0.988 of samples exactly right
    assert metrics["itm"]["auc"] >= 0.9  # the model card: 0.929
    rows = {r["name"]: r for r in metrics["ablation"]}
    assert rows["filter"]["accuracy"] > rows["none"]["accuracy"]
    assert rows["captioner"]["clean_yield"] > rows["none"]["clean_yield"]
    assert rows["capfilt"]["clean_yield"] > max(rows[name]["clean_yield"] for name in ("none", "filter"))
    # This captioner is right for 0.986-0.996 of images on its own, so CapFilt can at best match its accuracy
    # (the model card: 0.988 against 0.986); what the filter adds here is in the retrieval table (README).
    assert rows["capfilt"]["accuracy"] >= rows["captioner"]["accuracy"]
    sizes = sum(f.stat().st_size for name in ("vlm-captioner", "siglip") for f in (EMBEDDED_DIR / name).iterdir())
    assert sizes <= 12e6


def test_demo_vlm_pipeline_runs_the_pair_from_an_empty_folder(tmp_path, capsys):
    code, root = run_in_empty_folder(tmp_path, "demo-vlm")
    assert code == 0
    report = json.loads((root / "output" / "report.json").read_text())
    quality = report["evaluation"]
    assert quality["input"] == 512
    assert quality["kept_accuracy"] >= 0.95 and quality["clean_yield"] >= 0.90
    assert quality["kept_accuracy"] > quality["web_accuracy"] + 0.25
    assert main(["eval", str(root / "output"), "--ablation"]) == 0
    rows = {r["name"]: r for r in json.loads((root / "output" / "report.json").read_text())["ablation"]}
    assert rows["filter"]["accuracy"] > rows["none"]["accuracy"]
    assert rows["capfilt"]["clean_yield"] > max(rows[name]["clean_yield"] for name in ("none", "filter"))
    assert rows["capfilt"]["accuracy"] >= rows["captioner"]["accuracy"]

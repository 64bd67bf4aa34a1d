"""Model roles through the real entry point: a checkpoint that cannot serve its role is refused in one line with
exit 2 before any work; a dual encoder (SigLIP, SigLIP 2) as the filter scores a run as transformers alone does."""

import io
import json
import shutil
import tarfile

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoProcessor

from capfilt.cli import main
from capfilt.demo.training.tiny import (
    save_bare_llava,
    save_random_blip2_itm,
    save_random_llava,
    save_random_siglip,
    save_random_siglip2,
)
from capfilt.pipeline.config import PACKAGED_CONFIG, load_config
from tests.helpers import WORDS, outputs, rows, run, sample_members, write_shard

FILTER_NEEDS = (
    "the filter needs BLIP ITM (BlipForImageTextRetrieval), BLIP-2 ITM (Blip2ForImageTextRetrieval) or a dual "
    "encoder (SigLIP, SigLIP 2, CLIP, MetaCLIP 2)"
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_clip) -> dict[str, str]:
    root = tmp_path_factory.mktemp("roles")
    return {
        "clip": tiny_clip,
        "siglip": str(save_random_siglip(root / "siglip", WORDS)),
        "siglip2": str(save_random_siglip2(root / "siglip2", WORDS)),
        "llava": str(save_random_llava(root / "llava", WORDS)),
        "bare_llava": str(save_bare_llava(root / "bare_llava")),
        "blip2_itm": str(save_random_blip2_itm(root / "blip2_itm", WORDS)),
        "llava_missing": str(without_projector_bias(save_random_llava(root / "llava_missing", WORDS))),
    }


def without_projector_bias(path):
    weights = load_file(path / "model.safetensors")
    del weights[next(key for key in weights if key.endswith("multi_modal_projector.linear_1.bias"))]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


REFUSALS = [
    # The two misuses issue 27 found: a random ITM head ran to exit 0; a traceback inside Beam.
    (
        ["filter.model=embedded:captioner"],
        "filter.model: 'embedded:captioner' is a BlipForConditionalGeneration checkpoint (BLIP captioning, with no "
        f"ITM or ITC head); {FILTER_NEEDS}",
    ),
    (
        ["captioner.model=embedded:clip"],
        "captioner.model: 'embedded:clip' is a CLIPModel checkpoint (CLIP, a dual encoder that writes no text); "
        "the captioner needs BLIP captioning (BlipForConditionalGeneration) or any vision-language model",
    ),
    (["captioner.model={clip}"], "captioner.model: '{clip}' is a CLIPModel checkpoint"),
    (["similarity.model=embedded:captioner"], "similarity.model: 'embedded:captioner' is a BlipForConditionalGen"),
    (["captioner.model=embedded:itm"], "(BLIP image-text matching, which writes no text); the captioner needs"),
    (
        ["filter.model=embedded:clip", "similarity.model=itc"],
        "filter.model: 'embedded:clip' is a CLIPModel checkpoint (CLIP, a dual encoder with no calibrated match "
        "probability); set filter.score: similarity",
    ),
    (["captioner.model={siglip}"], "captioner.model: '{siglip}' is a SiglipModel checkpoint (SigLIP, a dual"),
    (["captioner.model={siglip2}"], "captioner.model: '{siglip2}' is a Siglip2Model checkpoint (SigLIP 2, a dual"),
    (["filter.model={llava}"], f"(a vision-language model, which generates text); {FILTER_NEEDS}"),
    (["similarity.model={llava}"], "similarity.model: '{llava}' is a LlavaForConditionalGeneration checkpoint"),
    (["captioner.model={blip2_itm}"], "(BLIP-2 image-text matching, which writes no text); the captioner needs"),
    # Weights that would load at random, and a checkpoint with no processor: refused before work, not in a worker.
    (
        ["captioner.model={llava_missing}"],
        "captioner.model: '{llava_missing}' loads into AutoModelForImageTextToText with 1 weight(s) missing "
        "(model.multi_modal_projector.linear_1.bias); capfilt never runs a model with random weights",
    ),
    (["captioner.model={bare_llava}"], "captioner.model: '{bare_llava}' does not load as AutoModelForImageTextToText"),
    # BLIP-2's ITC embeds an image as one vector per query; clip-retrieval's files hold one.
    (
        ["filter.model={blip2_itm}", "similarity.model=itc", "similarity.embeddings=true"],
        "similarity.embeddings: '{blip2_itm}' is a Blip2ForImageTextRetrieval checkpoint, whose ITC embeds an image",
    ),
]


@pytest.mark.parametrize("sets,message", REFUSALS)
def test_a_checkpoint_that_cannot_serve_its_role_is_refused_before_any_work(
    checkpoints, sets, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the demo pipeline writes its input here first: nothing may be written
    argv = ["run", "demo"] + [arg for item in sets for arg in ("--set", item.format(**checkpoints))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**checkpoints) in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_cached_hub_checkpoint_is_checked_offline(checkpoints, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    snapshot = tmp_path / "cache" / "models--someone--tiny-llava" / "snapshots" / ("a" * 40)
    shutil.copytree(checkpoints["llava"], snapshot)
    (tmp_path / "cache" / "models--someone--tiny-llava" / "refs").mkdir()
    (tmp_path / "cache" / "models--someone--tiny-llava" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert main(["run", "demo", "--set", "filter.model=someone/tiny-llava"]) == 2
    err = capsys.readouterr().err
    assert "filter.model: 'someone/tiny-llava' is a LlavaForConditionalGeneration checkpoint" in err
    assert list((tmp_path / "work").iterdir()) == []


def test_weights_missing_are_refused_before_any_work_instead_of_running_at_random(
    tiny_models, shards, tmp_path, capsys
):
    fake = tmp_path / "fake-itm"
    shutil.copytree(tiny_models[0], fake)
    settings = json.loads((fake / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps({**settings, "architectures": ["BlipForImageTextRetrieval"]}))
    assert run(tiny_models, shards, tmp_path / "out", "--set", f"filter.model={fake}") == 2
    err = capsys.readouterr().err
    refusal = f"filter.model: '{fake}' loads into BlipForImageTextRetrieval with 62 weight(s) missing (itm_head"
    assert err.count("\n") == 1 and refusal in err
    assert not (tmp_path / "out").exists()


def test_every_named_pipeline_loads_including_the_siglip2_filter():
    import yaml

    names = yaml.safe_load(PACKAGED_CONFIG.read_text())["pipelines"]
    assert "blip-siglip2" in names
    for name in names:
        assert load_config(name, str(PACKAGED_CONFIG)).name == name
    siglip2 = load_config("blip-siglip2", str(PACKAGED_CONFIG))
    assert siglip2.filter.model == "google/siglip2-base-patch16-224" and siglip2.filter.score == "itm"


# ---- a dual encoder as the filter, end to end ----


def input_images(folder) -> dict[str, Image.Image]:
    images = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    data = tar.extractfile(member).read()
                    images[member.name[: -len(".jpg")]] = Image.open(io.BytesIO(data)).convert("RGB")
    return images


def expected_scores(path: str, image, texts: list[str]) -> tuple[list[float], list[float]]:
    """SigLIP's match probabilities and cosines of ``texts`` for ``image``, by transformers alone."""
    model, processor = AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    with torch.inference_mode():
        output = model(**processor(text=texts, images=[image], padding="max_length", return_tensors="pt"))
    cosines = output.text_embeds @ output.image_embeds[0]  # both L2-normalised by the model
    return torch.sigmoid(output.logits_per_image[0]).tolist(), cosines.tolist()


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_a_siglip_filters_run_scores_as_the_model_does_and_reruns_byte_identical(
    checkpoints, tiny_models, shards, tmp_path, name
):
    # float32, as the direct computation: runtime.dtype auto is bfloat16 on a CPU with native bfloat16.
    sets = [
        "--set",
        f"filter.model={checkpoints[name]}",
        "--set",
        "similarity.model=itc",
        "--set",
        "runtime.dtype=float32",
    ]
    assert run(tiny_models, shards, tmp_path / "a", *sets) == 0
    images = input_images(shards)
    table = rows(tmp_path / "a")
    assert len(table) == 12 and all(row["status"] == "kept" for row in table)
    for row in table:
        texts = ([row["web_text"]] if row["web_text"] else []) + row["synthetic_texts"]
        scores, cosines = expected_scores(checkpoints[name], images[row["key"]], texts)
        got = ([row["web_score"]] if row["web_text"] else []) + row["synthetic_scores"]
        similarities = ([row["web_similarity"]] if row["web_text"] else []) + row["synthetic_similarities"]
        assert got == pytest.approx(scores, abs=1e-5) and similarities == pytest.approx(cosines, abs=1e-5)
    assert run(tiny_models, shards, tmp_path / "b", *sets) == 0
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


def test_a_caption_longer_than_the_filter_reads_is_noted_and_written_whole(checkpoints, tiny_models, tmp_path):
    long = " ".join(["a large red circle on the left and a small blue square on the right"] * 6)
    write_shard(tmp_path / "in" / "00000.tar", sample_members("long", long) + sample_members("short", "a red square"))
    sets = ["--set", f"filter.model={checkpoints['siglip']}", "--set", "captioner.num_captions=0"]
    assert run(tiny_models, tmp_path / "in", tmp_path / "out", *sets) == 0
    by_key = {row["key"]: row for row in rows(tmp_path / "out")}
    count = len(AutoProcessor.from_pretrained(checkpoints["siglip"]).tokenizer(long)["input_ids"])
    assert by_key["long"]["error"] == f"text_truncated: web caption, the filter read 64 of its {count} tokens"
    assert by_key["short"]["error"] == "" and by_key["long"]["caption"] == long
    stats = json.loads((tmp_path / "out" / "00000_stats.json").read_text())
    assert stats["errors"] == {"text_truncated": 1}
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        assert tar.extractfile("long.txt").read().decode() == long

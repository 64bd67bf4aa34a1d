"""``models.families``: a checkpoint's config.json picks its family; a role it cannot serve, or weights that did not
all load, are refused with a sentence naming what the checkpoint is and what the role needs."""

import json
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from capfilt.demo.training.tiny import (
    save_random_blip2,
    save_random_blip2_itm,
    save_random_git,
    save_random_llava,
    save_random_siglip,
    save_random_siglip2,
)
from capfilt.models import families
from capfilt.models.captioner import Captioner
from capfilt.models.families import CAPTIONER, FILTER, SIMILARITY, ModelRoleError
from capfilt.models.itm import Blip2ItmScorer, ItmScorer
from capfilt.models.loading import resolve_model
from capfilt.models.similarity import Blip2ItcSimilarity, DualEncoder, DualEncoderFilter, ItcSimilarity
from capfilt.models.vlm_captioner import VlmCaptioner
from tests.helpers import WORDS

FILTER_NEEDS = (
    "the filter needs BLIP ITM (BlipForImageTextRetrieval), BLIP-2 ITM (Blip2ForImageTextRetrieval) or a dual "
    "encoder (SigLIP, SigLIP 2, CLIP, MetaCLIP 2)"
)
CAPTIONER_NEEDS = (
    "the captioner needs BLIP captioning (BlipForConditionalGeneration) or any vision-language model "
    "(AutoModelForImageTextToText)"
)
VLM = "any vision-language model (AutoModelForImageTextToText)"


@pytest.fixture(scope="module")
def others(tmp_path_factory) -> dict[str, str]:
    """Tiny random checkpoints of the families besides BLIP and CLIP, saved by path."""
    root = tmp_path_factory.mktemp("families")
    return {
        "siglip": str(save_random_siglip(root / "siglip", WORDS)),
        "siglip2": str(save_random_siglip2(root / "siglip2", WORDS)),
        "blip2": str(save_random_blip2(root / "blip2", WORDS)),
        "llava": str(save_random_llava(root / "llava", WORDS)),
        "git": str(save_random_git(root / "git", WORDS)),
        "blip2_itm": str(save_random_blip2_itm(root / "blip2_itm", WORDS)),
    }


def config(name: str) -> dict:
    return families.local_config(name)


def test_each_checkpoint_is_its_family(tiny_models, tiny_clip, others):
    expected = {
        "embedded:captioner": "BLIP captioning",
        tiny_models[0]: "BLIP captioning",
        "embedded:itm": "BLIP ITM",
        tiny_models[1]: "BLIP ITM",
        "embedded:clip": "CLIP",
        tiny_clip: "CLIP",
        others["siglip"]: "SigLIP",
        others["siglip2"]: "SigLIP 2",
        others["blip2_itm"]: "BLIP-2 ITM",
        # Every checkpoint transformers' image-text-to-text registry lists: one family, one code path.
        others["blip2"]: VLM,
        others["llava"]: VLM,
        others["git"]: VLM,
    }
    assert {name: families.identify(config(name)).name for name in expected} == expected
    assert families.identify({"model_type": "bert", "architectures": ["BertModel"]}) is None


def test_blip_needs_its_architecture_to_tell_its_heads_apart():
    assert families.identify({"model_type": "blip", "architectures": ["BlipForImageTextRetrieval"]}).name == "BLIP ITM"
    assert families.identify({"model_type": "blip", "architectures": ["BlipModel"]}) is None
    problem = families.role_problem(FILTER, "x", {"model_type": "blip"})
    assert problem.startswith("filter.model: 'x' is a checkpoint of model_type 'blip' that names no architecture")


def test_the_issues_misuses_are_refused_in_one_sentence_naming_key_checkpoint_and_need():
    assert families.role_problem(FILTER, "embedded:captioner", config("embedded:captioner")) == (
        "filter.model: 'embedded:captioner' is a BlipForConditionalGeneration checkpoint (BLIP captioning, with no "
        f"ITM or ITC head); {FILTER_NEEDS}"
    )
    assert families.role_problem(CAPTIONER, "embedded:clip", config("embedded:clip")) == (
        f"captioner.model: 'embedded:clip' is a CLIPModel checkpoint (CLIP, a dual encoder that writes no text); "
        f"{CAPTIONER_NEEDS}"
    )
    assert families.role_problem(SIMILARITY, "embedded:captioner", config("embedded:captioner")).endswith(
        "similarity.model needs itc (the filter's own), BLIP ITM (BlipForImageTextRetrieval), BLIP-2 ITM "
        "(Blip2ForImageTextRetrieval) or a dual encoder (SigLIP, SigLIP 2, CLIP, MetaCLIP 2)"
    )


def test_vision_language_models_caption_and_are_refused_as_filters(others):
    for name, cls in (("blip2", "Blip2ForConditionalGeneration"), ("llava", "LlavaForConditionalGeneration")):
        assert families.role_problem(CAPTIONER, others[name], config(others[name])) is None
        assert families.role_problem(FILTER, others[name], config(others[name])) == (
            f"filter.model: {others[name]!r} is a {cls} checkpoint (a vision-language model, which generates text); "
            f"{FILTER_NEEDS}"
        )
    # Same model type as BLIP-2's captioner, but a matcher: it filters and does not caption.
    matcher = {"model_type": "blip-2", "architectures": ["Blip2ForImageTextRetrieval"]}
    assert families.role_problem(FILTER, "m", matcher) is None
    assert families.role_problem(CAPTIONER, "m", matcher) == (
        f"captioner.model: 'm' is a Blip2ForImageTextRetrieval checkpoint (BLIP-2 image-text matching, which writes "
        f"no text); {CAPTIONER_NEEDS}"
    )


def test_every_role_a_family_serves_passes_and_only_those(tiny_models, tiny_clip, others):
    serves = {
        tiny_models[0]: {CAPTIONER},
        tiny_models[1]: {FILTER, SIMILARITY},
        tiny_clip: {FILTER, SIMILARITY},
        others["siglip"]: {FILTER, SIMILARITY},
        others["siglip2"]: {FILTER, SIMILARITY},
        others["blip2"]: {CAPTIONER},
        others["llava"]: {CAPTIONER},
        others["git"]: {CAPTIONER},
        others["blip2_itm"]: {FILTER, SIMILARITY},
    }
    for name, roles in serves.items():
        passed = {
            role for role in (CAPTIONER, FILTER, SIMILARITY) if families.role_problem(role, name, config(name)) is None
        }
        assert passed == roles, name


def test_a_filter_without_a_match_probability_needs_the_similarity_score(tiny_clip, others):
    assert families.score_problem(tiny_clip, config(tiny_clip), "similarity") is None
    assert families.score_problem(others["siglip"], config(others["siglip"]), "itm") is None
    assert families.score_problem(tiny_clip, config(tiny_clip), "itm") == (
        f"filter.model: {tiny_clip!r} is a CLIPModel checkpoint (CLIP, a dual encoder with no calibrated match "
        "probability); set filter.score: similarity (and similarity.model: itc for its own cosine) to filter by its "
        "cosine"
    )


def test_the_family_table_picks_the_wrapper_of_each_role(tiny_models, tiny_clip, others):
    loaded = {
        (CAPTIONER, tiny_models[0]): Captioner,
        (FILTER, tiny_models[1]): ItmScorer,
        (SIMILARITY, tiny_models[1]): ItcSimilarity,
        (FILTER, others["siglip"]): DualEncoderFilter,
        (FILTER, tiny_clip): DualEncoderFilter,
        (SIMILARITY, others["siglip2"]): DualEncoder,
        (CAPTIONER, others["llava"]): VlmCaptioner,
        (CAPTIONER, others["blip2"]): VlmCaptioner,
        (CAPTIONER, others["git"]): VlmCaptioner,
        (FILTER, others["blip2_itm"]): Blip2ItmScorer,
        (SIMILARITY, others["blip2_itm"]): Blip2ItcSimilarity,
    }
    for (role, name), wrapper in loaded.items():
        assert type(families.load(role, name, device="cpu")) is wrapper


def test_loading_refuses_a_role_the_checkpoint_cannot_serve(tiny_models, others):
    with pytest.raises(ModelRoleError, match=r"^filter.model: .* BlipForConditionalGeneration checkpoint"):
        families.load(FILTER, "embedded:captioner", device="cpu")
    with pytest.raises(ModelRoleError, match=r"^filter.model: .* LlavaForConditionalGeneration checkpoint"):
        families.load(FILTER, others["llava"], device="cpu")
    # A wrapper loaded directly checks the same, and refuses a family it does not run.
    with pytest.raises(ModelRoleError, match=r"^filter.model: 'embedded:captioner' is a BlipForConditionalGen"):
        ItmScorer.from_pretrained("embedded:captioner", device="cpu")
    with pytest.raises(ModelRoleError, match="ItmScorer does not run SigLIP checkpoints"):
        ItmScorer.from_pretrained(others["siglip"], device="cpu")


def test_weights_missing_from_a_checkpoint_are_refused_never_initialised(tmp_path, others):
    # A captioning checkpoint whose config.json claims the ITM class: the role check passes, the weights do not.
    fake = tmp_path / "fake-itm"
    shutil.copytree(resolve_model("embedded:captioner"), fake)
    settings = json.loads((fake / "config.json").read_text())
    (fake / "config.json").write_text(json.dumps({**settings, "architectures": ["BlipForImageTextRetrieval"]}))
    with pytest.raises(ModelRoleError) as refused:
        ItmScorer.from_pretrained(str(fake), device="cpu")
    assert str(refused.value).startswith(f"filter.model: '{fake}' loads into BlipForImageTextRetrieval with 114 weight")
    assert "(itm_head.bias, itm_head.weight, " in str(refused.value) and str(refused.value).endswith("random weights")
    # A SigLIP checkpoint missing its calibration: one weight is enough to refuse it.
    siglip = tmp_path / "siglip"
    shutil.copytree(others["siglip"], siglip)
    weights = load_file(siglip / "model.safetensors")
    del weights["logit_bias"]
    save_file(weights, siglip / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelRoleError, match=r"loads into SiglipModel with 1 weight\(s\) missing \(logit_bias\)"):
        families.load(FILTER, str(siglip), device="cpu")


def test_blip_captioners_tied_decoder_is_not_a_missing_weight(tiny_models):
    """BLIP's captioning checkpoints store no decoder output weights: transformers ties them to the word embeddings
    and does not count them missing, so the missing-weights check refuses nothing a real captioner lacks."""
    for name in ("embedded:captioner", tiny_models[0]):
        path = resolve_model(name)
        with safe_open(f"{path}/model.safetensors", "pt") as weights:
            assert "text_decoder.cls.predictions.decoder.weight" not in weights.keys()
        model = Captioner.from_pretrained(name, device="cpu").model
        decoder = model.text_decoder.cls.predictions.decoder.weight
        assert decoder.data_ptr() == model.text_decoder.bert.embeddings.word_embeddings.weight.data_ptr()


def test_a_hub_id_is_read_from_the_local_cache_only(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert families.local_config("someone/not-cached") is None  # the load checks it; this never goes online
    snapshot = tmp_path / "models--someone--llava" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["LlavaX"]}))
    (tmp_path / "models--someone--llava" / "refs").mkdir()
    (tmp_path / "models--someone--llava" / "refs" / "main").write_text("0" * 40)
    assert families.local_config("someone/llava") == {"model_type": "llava", "architectures": ["LlavaX"]}


def test_the_launchers_check_refuses_missing_weights_and_a_missing_processor_without_loading(tmp_path, others):
    from capfilt.demo.training.tiny import save_bare_llava
    from capfilt.models.base import check_loadable

    for name in ("llava", "blip2", "git"):
        check_loadable(CAPTIONER, others[name])  # whole checkpoints pass
    check_loadable(FILTER, others["blip2_itm"])
    llava = tmp_path / "llava"
    shutil.copytree(others["llava"], llava)
    weights = load_file(llava / "model.safetensors")
    del weights[next(key for key in weights if key.endswith("multi_modal_projector.linear_1.bias"))]
    save_file(weights, llava / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelRoleError) as refused:
        check_loadable(CAPTIONER, str(llava))
    assert str(refused.value) == (
        f"captioner.model: '{llava}' loads into AutoModelForImageTextToText with 1 weight(s) missing "
        "(model.multi_modal_projector.linear_1.bias); capfilt never runs a model with random weights"
    )
    with pytest.raises(ModelRoleError) as loaded:  # the load says the same, wherever it runs
        families.load(CAPTIONER, str(llava), device="cpu")
    assert str(loaded.value) == str(refused.value)
    bare = save_bare_llava(tmp_path / "bare")  # weights and config, no processor
    with pytest.raises(ModelRoleError, match=rf"^captioner.model: '{bare}' does not load as AutoModelForImageTextTo"):
        check_loadable(CAPTIONER, str(bare))

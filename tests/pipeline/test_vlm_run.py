"""A run with a vision-language captioner and BLIP-2's matcher, through the real entry point: every sample
accounted for, the captions those of the captioner called directly, and a rerun byte for byte the same."""

import pytest

from capfilt.demo.training.tiny import save_random_blip2_itm, save_random_llava
from capfilt.models import families
from tests.helpers import WORDS, outputs, rows, run
from tests.pipeline.test_roles import input_images


@pytest.fixture(scope="module")
def vlm_pair(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("vlm_pair")
    return str(save_random_llava(root / "llava", WORDS)), str(save_random_blip2_itm(root / "blip2_itm", WORDS))


@pytest.mark.parametrize("decoding", ["nucleus", "greedy"])
def test_a_llava_captioner_and_blip2_filter_run_reruns_byte_identical(
    vlm_pair, tiny_models, shards, tmp_path, decoding
):
    captioner, matcher = vlm_pair
    sets = [
        *("--set", f"captioner.model={captioner}", "--set", "captioner.instruction=a picture of"),
        *("--set", f"captioner.decoding={decoding}", "--set", "captioner.max_length=4"),
        *("--set", f"filter.model={matcher}", "--set", "similarity.model=itc", "--set", "runtime.dtype=float32"),
    ]
    assert run(tiny_models, shards, tmp_path / "a", *sets) == 0
    table = rows(tmp_path / "a")
    assert len(table) == 12 and all(row["synthetic_texts"] for row in table)
    assert all(row["web_similarity"] is not None for row in table if row["web_text"])
    if decoding == "greedy":  # one caption per image, the one the captioner gives that image alone
        direct = families.load(
            "captioner", captioner, device="cpu", instruction="a picture of", decoding="greedy", max_length=4
        )
        images = input_images(shards)
        for row in table:
            assert [row["synthetic_texts"]] == direct.caption([images[row["key"]]], seed=0)
    assert run(tiny_models, shards, tmp_path / "b", *sets) == 0
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")

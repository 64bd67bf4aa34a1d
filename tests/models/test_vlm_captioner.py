"""The generic captioner: one code path for every ``AutoModelForImageTextToText`` family. Each family's tiny random
checkpoint is saved and loaded by path; its captions are checked against ``generate`` called here with
transformers alone, one image at a time."""

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from capfilt.demo.training.tiny import save_random_blip2, save_random_git, save_random_llava
from capfilt.models import families
from capfilt.models.decoding import DEFAULT_INSTRUCTION
from tests.helpers import WORDS

# (builder, prompt): LLaVA is prompted through its chat template, BLIP-2 continues a plain prompt, GIT reads the
# image alone.
FAMILIES = {
    "llava": (save_random_llava, ""),
    "blip2": (save_random_blip2, "a picture of"),
    "git": (save_random_git, ""),
}
INSTRUCTION = "a picture of the left"  # the tiny tokenizers know only WORDS
LENGTHS = dict(min_length=2, max_length=6)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("vlm")
    return {name: str(build(root / name, WORDS + ["user", "assistant"])) for name, (build, _) in FAMILIES.items()}


def images() -> list[Image.Image]:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    return [Image.new("RGB", (40 + 8 * i, 32), colour) for i, colour in enumerate(colours)]


def captioner(checkpoints, name, **options):
    return families.load(
        "captioner", checkpoints[name], device="cpu", prompt=FAMILIES[name][1], instruction=INSTRUCTION, **options
    )


def direct(path: str, prompt: str, image, **generate) -> list[str]:
    """Captions of one image by transformers alone: the processor, ``generate``, the new tokens decoded."""
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    if processor.chat_template:
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": INSTRUCTION}]}]
        prompt = processor.apply_chat_template(turn, add_generation_prompt=True)
    inputs = processor(images=[image], text=[prompt] if prompt else None, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, min_new_tokens=2, max_new_tokens=6, **generate)
    if "input_ids" in inputs:
        output = output[:, inputs["input_ids"].shape[1] :]
    return [" ".join(text.split()) for text in processor.batch_decode(output, skip_special_tokens=True)]


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_captions_of_a_batch_are_each_images_own_direct_generate(checkpoints, name):
    model = captioner(checkpoints, name, decoding="greedy", num_captions=3, **LENGTHS)
    got = model.caption(images(), seed=0)
    assert got == [direct(checkpoints[name], FAMILIES[name][1], image, do_sample=False) for image in images()]
    assert all(len(captions) == 1 and captions[0] for captions in got)  # greedy has one caption to give


@pytest.mark.parametrize("name", FAMILIES)
def test_beam_returns_num_captions_beams_as_generate_does(checkpoints, name):
    model = captioner(checkpoints, name, decoding="beam", num_captions=2, **LENGTHS)
    got = model.caption(images(), seed=0)
    expected = [
        direct(checkpoints[name], FAMILIES[name][1], image, do_sample=False, num_beams=2, num_return_sequences=2)
        for image in images()
    ]
    assert got == expected and all(len(captions) == 2 for captions in got)


@pytest.mark.parametrize("name", FAMILIES)
def test_nucleus_captions_are_seeded(checkpoints, name):
    model = captioner(checkpoints, name, num_captions=3, top_p=0.9, **LENGTHS)
    first = model.caption(images(), seed=7)
    assert (
        first
        == model.caption(images(), seed=7)
        == captioner(checkpoints, name, num_captions=3, top_p=0.9, **LENGTHS).caption(images(), seed=7)
    )
    assert first != model.caption(images(), seed=8)
    assert [len(captions) for captions in first] == [3, 3, 3]


def test_a_chat_template_captioner_is_asked_the_instruction_and_pads_on_the_left(checkpoints):
    model = captioner(checkpoints, "llava")
    assert model.prompt == "user: <image>\na picture of the left assistant:"
    assert model.processor.tokenizer.padding_side == "left"
    default = families.load("captioner", checkpoints["llava"], device="cpu")
    assert DEFAULT_INSTRUCTION in default.prompt
    # Without a chat template the prompt is plain text; BLIP-2's processor puts its image tokens in front.
    assert captioner(checkpoints, "blip2").prompt == "a picture of"


def test_a_caption_is_the_generated_tokens_alone(checkpoints):
    # With a prompt as long as the caption budget, a caption that kept any prompt token would show its words.
    model = captioner(checkpoints, "blip2", decoding="greedy", min_length=1, max_length=1)
    for (caption,) in model.caption(images(), seed=0):
        assert len(caption.split()) <= 1


@pytest.mark.parametrize("decoding,beams", [("greedy", 1), ("beam", 2)])
def test_blips_own_captioner_decodes_greedy_and_beam_as_generate_does(tiny_models, decoding, beams):
    from transformers import BlipForConditionalGeneration

    model = families.load("captioner", tiny_models[0], device="cpu", decoding=decoding, num_captions=beams, **LENGTHS)
    blip, processor = (
        BlipForConditionalGeneration.from_pretrained(tiny_models[0]),
        AutoProcessor.from_pretrained(tiny_models[0]),
    )
    expected = []
    for image in images():
        inputs = processor(images=[image], text=["a picture of"], return_tensors="pt")
        with torch.inference_mode():
            output = blip.eval().generate(
                **inputs,
                do_sample=False,
                num_beams=beams,
                num_return_sequences=beams,
                min_new_tokens=2,
                max_new_tokens=6,
            )
        # BLIP's generate keeps the prompt without its closing [SEP]
        new = output[:, inputs["input_ids"].shape[1] - 1 :]
        expected.append([" ".join(t.split()) for t in processor.batch_decode(new, skip_special_tokens=True)])
    assert model.caption(images(), seed=0) == expected

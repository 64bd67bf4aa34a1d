"""The demo VLM captioner (``models/embedded/vlm-captioner``): a tiny decoder-only ``LlavaForConditionalGeneration``
(a SigLIP vision tower, LLaVA's two-layer projector, a Llama decoder) with a chat template, trained by teacher
forcing on the demo world.

It answers one user turn, the image and ``INSTRUCTION``, with the scene's canonical caption and ``</s>``: the
prompt is the pipeline's own (``processor.apply_chat_template`` with the generation prompt), so training feeds
the decoder exactly what ``generate`` will. As LLaVA starts from a pre-trained vision encoder and keeps it
frozen, its vision tower starts from the demo world's own trained one, the BLIP captioner's
(``vision_from_blip``), and stays frozen while the projector and the decoder learn to read it (from scratch,
4000 steps left greedy captions exactly right for 0.42 of images: the decoder had to learn to see too). The
tower is SigLIP's, as in LLaVA-Interleave and LLaVA-OneVision rather than LLaVA-1.5's CLIP, so that the demo
SigLIP filter (``demo.training.siglip``) can start from it whole, as the BLIP filter starts from the BLIP captioner.
"""

from __future__ import annotations

import random
from pathlib import Path

from .. import world
from . import tiny
from .build import IMAGE_SIZE, PATCH_SIZE, sincos_positions
from .data import draw_images
from .loops import next_token_accuracy, optimise

# The user's words (``captioner.instruction``); each is in the tokenizer's vocabulary.
INSTRUCTION = "describe the picture."
VLM_HIDDEN = 128
VLM_LAYERS = 4


def vocabulary() -> list[str]:
    """The tokenizer's words: the demo world's and the instruction's (``build_vlm_tokenizer`` adds punctuation)."""
    return sorted(set(world.VOCABULARY) | set(INSTRUCTION.rstrip(".").split()))


def vision_config(hidden: int = VLM_HIDDEN, layers: int = VLM_LAYERS) -> dict:
    """The SigLIP vision tower the captioner and the filter share, the BLIP towers' shape (image and patch size,
    activation, layer-norm epsilon), so that a BLIP tower's weights compute the same in it."""
    return dict(
        model_type="siglip_vision_model",
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


def image_processor():
    """The pair's ``SiglipImageProcessor``: the demo image size, and the BLIP towers' normalisation (OpenAI
    CLIP's mean and standard deviation), which a tower started from BLIP's was trained on."""
    from transformers import SiglipImageProcessor
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return SiglipImageProcessor(size=size, image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD))


def vision_from_blip(tower, blip_directory: Path) -> None:
    """Load the vision tower of the BLIP checkpoint in ``blip_directory`` into ``tower`` (a ``SiglipVisionModel``
    of ``vision_config``'s shape): the same ViT with other names. BLIP's fused ``qkv`` splits into SigLIP's
    ``q_proj``, ``k_proj`` and ``v_proj`` (BLIP lays it out as query, key, value, each over all heads);
    ``projection`` is ``out_proj``; SigLIP has no class token, so BLIP's goes, with its position."""
    from safetensors.torch import load_file

    prefix = "vision_model."
    mapped = {}
    for name, tensor in load_file(Path(blip_directory) / "model.safetensors").items():
        if not name.startswith(prefix) or name == prefix + "embeddings.class_embedding":
            continue
        name = name[len(prefix) :]
        if name == "embeddings.position_embedding":
            mapped["embeddings.position_embedding.weight"] = tensor[0, 1:]
        elif ".self_attn.qkv." in name:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                mapped[name.replace("qkv", part)] = chunk
        else:
            mapped[name.replace("self_attn.projection", "self_attn.out_proj")] = tensor
    missing, unexpected = tower.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f"BLIP and SigLIP vision towers differ: missing {missing}, unexpected {unexpected}")


def build_captioner(seed: int, hidden: int = VLM_HIDDEN, layers: int = VLM_LAYERS, vision_from: Path | None = None):
    """A fresh ``LlavaForConditionalGeneration`` and its ``LlavaProcessor`` (chat template, left padding),
    initialised from ``seed``; the vision tower from the BLIP checkpoint ``vision_from`` (``vision_from_blip``),
    or without one from scratch, its patch positions started from a 2-D sine-cosine table."""
    # The projector and the decoder only read the patches; SigLIP's pooling head would sit unused in the file.
    vision = dict(vision_config(hidden, layers), vision_use_head=False)
    tokenizer = tiny.build_vlm_tokenizer(vocabulary())
    model, processor = tiny.llava(tokenizer, vision, image_processor(), PATCH_SIZE, hidden, layers, "full", seed)
    set_sincos_positions(model.model.vision_tower.embeddings)
    if vision_from is not None:
        vision_from_blip(model.model.vision_tower, vision_from)
    return model, processor


def set_sincos_positions(embeddings) -> None:
    """Start a SigLIP vision tower's patch positions from ``build.sincos_positions`` (the BLIP towers' reason:
    half of a caption says where things are); SigLIP has no class position, so the table's first row goes."""
    import torch

    table = embeddings.position_embedding.weight
    with torch.no_grad():
        table.copy_(sincos_positions(table.shape[0] + 1, table.shape[1])[0, 1:])


def chat_prompt(processor, instruction: str = INSTRUCTION) -> str:
    """The prompt the pipeline gives a chat-template captioner: one user turn, the image then ``instruction``,
    and the assistant's turn opened for generation."""
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
    return processor.apply_chat_template([message], add_generation_prompt=True)


def caption_batch(processor, rng: random.Random, batch_size: int, instruction: str = INSTRUCTION):
    """Inputs and labels for one captioner step: the chat prompt followed by the canonical caption and
    ``</s>``, padded on the right (real tokens then sit at the positions ``generate`` gives a left-padded
    prompt, counted from its first real token); the loss is on the caption and ``</s>`` only.

    Returns ``(inputs, labels)``: the processor's ``input_ids``, ``attention_mask`` and ``pixel_values``, and
    the labels (the model shifts them by one itself).
    """
    tokenizer = processor.tokenizer
    prompt = chat_prompt(processor, instruction)
    scenes, images = draw_images(rng, batch_size)
    texts = [f"{prompt} {world.canonical_caption(s)}{tokenizer.eos_token}" for s in scenes]
    inputs = processor(images=images, text=texts, padding=True, padding_side="right", return_tensors="pt")
    prompt_length = len(processor(images=images[:1], text=[prompt], return_tensors="pt").input_ids[0])
    labels = inputs.input_ids.masked_fill(inputs.attention_mask == 0, -100)
    labels[:, :prompt_length] = -100
    return inputs, labels


def train_captioner(
    model,
    processor,
    steps: int,
    batch_size: int,
    lr: float,
    rng: random.Random,
    bfloat16: bool = False,
    freeze_vision: bool = False,
) -> float:
    """Train ``model`` (``LlavaForConditionalGeneration``) for ``steps`` by teacher forcing, under bfloat16
    autocast with ``bfloat16``, its vision tower fixed with ``freeze_vision``; returns the seconds taken."""
    model.model.vision_tower.requires_grad_(not freeze_vision)

    def loss_fn():
        inputs, labels = caption_batch(processor, rng, batch_size)
        out = model(**inputs, labels=labels)
        return out.loss, next_token_accuracy(out.logits, labels)

    seconds = optimise(model, loss_fn, steps, lr, "vlm-captioner", bfloat16=bfloat16)
    model.requires_grad_(True)
    return seconds

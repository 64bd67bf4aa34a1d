"""Synthetic captions from any vision-language model transformers loads with ``AutoModelForImageTextToText``:
BLIP-2, InstructBLIP, GIT, Florence-2, PaliGemma, LLaVA and its successors, Qwen2-VL, Idefics3, Gemma 3, ...

One code path for all of them: the processor makes the model's inputs from the images and one prompt (its chat
template around ``instruction`` where it has one, else ``prompt`` as plain text), ``generate`` decodes, and the
caption is the generated tokens alone.
"""

from __future__ import annotations

from .base import PretrainedModel
from .decoding import DEFAULT_INSTRUCTION, NUCLEUS, captions_per_image, generate_options, tidy
from .families import CAPTIONER, VLM_CAPTIONER


class VlmCaptioner(PretrainedModel):
    """Writes ``num_captions`` captions per image with a vision-language model.

    Each image is prompted alone (one image per prompt) and a batch is padded on the side the model generates
    from: the left for a decoder-only model, whose new tokens must follow each prompt directly, so that an image
    gets the caption in a batch it gets alone.

    Args:
        model: a loaded ``AutoModelForImageTextToText`` model in eval mode.
        processor: its ``AutoProcessor``.
        device: where ``model`` lives.
        prompt: plain text the model continues when its processor has no chat template (BLIP-2: "a photo of",
            PaliGemma: "caption en", Florence-2: "<CAPTION>"); empty: the image alone (GIT).
        instruction: the user's words in the chat template, after the image, when the processor has one.
        num_captions: captions per image (sampled, or beams returned; greedy decoding writes one).
        top_p: nucleus sampling mass.
        min_length: fewest generated tokens, prompt excluded.
        max_length: most generated tokens, prompt excluded.
        decoding: ``nucleus``, ``greedy`` or ``beam`` (``models.decoding``).
    """

    role, kind = CAPTIONER, VLM_CAPTIONER
    # The processor makes pixels and prompt together (the image's token count can depend on its size), so the
    # pipeline does not make this model's pixels ahead (``pipeline.shard.pixels``).
    makes_own_pixels = True

    def __init__(
        self,
        model,
        processor,
        device="cpu",
        prompt="",
        instruction=DEFAULT_INSTRUCTION,
        num_captions=3,
        top_p=0.9,
        min_length=5,
        max_length=20,
        decoding=NUCLEUS,
    ):
        super().__init__(model, processor, device)
        self.prompt = self.prompt_text(processor, prompt, instruction)
        self.num_captions, self.top_p, self.decoding = captions_per_image(decoding, num_captions), top_p, decoding
        self.min_length, self.max_length = min_length, max_length
        self.decoder_only = not model.config.is_encoder_decoder
        if self.decoder_only:
            processor.tokenizer.padding_side = "left"

    @staticmethod
    def prompt_text(processor, prompt: str, instruction: str) -> str:
        """The text beside each image: the chat template's user turn (the image, then ``instruction``) ready for
        the assistant's answer, or ``prompt`` stripped when the processor has no template."""
        if getattr(processor, "chat_template", None):
            turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
            return processor.apply_chat_template(turn, add_generation_prompt=True)
        return prompt.strip()

    def caption(self, images: list, seed: int, num_captions: int | None = None, pixel_values=None) -> list[list[str]]:
        """``num_captions`` captions for each image (default: the captioner's), the same for the same images
        and ``seed``. ``pixel_values`` is accepted for the captioners' one interface and not used: the processor
        makes pixels and prompt together."""
        import torch

        n = captions_per_image(self.decoding, self.num_captions if num_captions is None else num_captions)
        if not images or n == 0:
            return [[] for _ in images]
        text = {"text": [self.prompt] * len(images)} if self.prompt else {}
        inputs = self.processor(images=list(images), return_tensors="pt", padding=True, **text)
        inputs = {
            name: value.to(self.device, self.model.dtype) if value.is_floating_point() else value.to(self.device)
            for name, value in inputs.items()
        }
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs, **generate_options(self.decoding, n, self.top_p, self.min_length, self.max_length)
            )
        # A decoder-only model returns the prompt before its new tokens; an encoder-decoder model (Florence-2), and
        # one prompted by the image alone (GIT), returns a start token, which decoding skips as special.
        if self.decoder_only and "input_ids" in inputs:
            output = output[:, inputs["input_ids"].shape[1] :]
        texts = tidy(self.processor.batch_decode(output, skip_special_tokens=True))
        return [texts[i * n : (i + 1) * n] for i in range(len(images))]

"""Synthetic captions from a BLIP captioner (``BlipForConditionalGeneration``), which continues a text prompt."""

from __future__ import annotations

from .base import PretrainedModel
from .decoding import NUCLEUS, captions_per_image, generate_options, tidy
from .families import BLIP_CAPTIONER, CAPTIONER
from .pixels import pixel_rows


class Captioner(PretrainedModel):
    """Writes ``num_captions`` captions per image with ``BlipForConditionalGeneration``.

    Args:
        model: a loaded ``BlipForConditionalGeneration`` in eval mode.
        processor: its ``BlipProcessor``.
        device: where ``model`` lives.
        prompt: text the decoder continues (BLIP used "a picture of "); it is not part of the caption.
        num_captions: captions per image (sampled, or beams returned; greedy decoding writes one).
        top_p: nucleus sampling mass.
        min_length: fewest generated tokens, prompt excluded.
        max_length: most generated tokens, prompt excluded.
        decoding: ``nucleus`` (BLIP's), ``greedy`` or ``beam`` (``models.decoding``).
        instruction: unused: BLIP's processor has no chat template, so the captioners' one set of options is
            taken whole and BLIP continues ``prompt``.
    """

    role, kind = CAPTIONER, BLIP_CAPTIONER

    def __init__(
        self,
        model,
        processor,
        device="cpu",
        prompt="a picture of ",
        num_captions=3,
        top_p=0.9,
        min_length=5,
        max_length=20,
        decoding=NUCLEUS,
        instruction=None,
    ):
        super().__init__(model, processor, device)
        self.prompt = prompt.strip()
        self.num_captions, self.top_p, self.decoding = captions_per_image(decoding, num_captions), top_p, decoding
        self.min_length, self.max_length = min_length, max_length

    def caption(self, images: list, seed: int, num_captions: int | None = None, pixel_values=None) -> list[list[str]]:
        """``num_captions`` captions for each image (default: the captioner's), the same for the same images
        and ``seed``. ``pixel_values``, when given, are ``image_processor``'s pixels of ``images``
        (``models.pixels``), made ahead so this call does not make them again."""
        import torch

        n = captions_per_image(self.decoding, self.num_captions if num_captions is None else num_captions)
        if not images or n == 0:
            return [[] for _ in images]
        text = [self.prompt] * len(images) if self.prompt else None
        pixels = pixel_rows(self.image_processor, images, pixel_values, 0, len(images))
        pixel_values = pixels.to(self.device, self.model.dtype)
        inputs = self.processor(text=text, return_tensors="pt") if text else {}
        prompt = {k: inputs[k].to(self.device) for k in ("input_ids", "attention_mask") if k in inputs}
        prompt_ids = prompt.get("input_ids")
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                pixel_values=pixel_values,
                input_ids=prompt_ids,
                attention_mask=prompt.get("attention_mask"),
                **generate_options(self.decoding, n, self.top_p, self.min_length, self.max_length),
            )
        # generate() keeps the prompt minus its closing [SEP] (or the lone BOS token without a prompt).
        start = prompt_ids.shape[1] - 1 if prompt_ids is not None else 1
        texts = tidy(self.processor.batch_decode(output[:, start:], skip_special_tokens=True))
        return [texts[i * n : (i + 1) * n] for i in range(len(images))]

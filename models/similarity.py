"""Contrastive similarity: the cosine of L2-normalised image and text embeddings, as CLIP and BLIP's ITC head
compute it. Two backends, one interface: ``image_embeddings``, ``text_embeddings`` and ``score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PretrainedModel, text_limit
from .pixels import pixel_rows

# A similarity.model value that means "the filter checkpoint's own ITC head" rather than a checkpoint name.
ITC = "itc"


class _Similarity(PretrainedModel):
    """What both backends share: scoring candidates from the two embedding functions.

    Subclasses set ``model_class`` and ``dimension`` and implement ``_embed_images(pixel_values)`` and
    ``_embed_texts(input_ids, attention_mask)`` (unnormalised, in the model's dtype).
    """

    def __init__(self, model, processor, device: str, batch_size: int, max_text_tokens: int):
        super().__init__(model, processor, device)
        self.batch_size, self.max_text_tokens = batch_size, max_text_tokens

    def reuses_vision_of(self, scorer) -> bool:
        """Whether ``image_embeddings`` can start from ``scorer.vision_states`` (the same vision tower)."""
        return False

    def image_embeddings(self, images: list, vision_states=None, pixel_values=None):
        """``(len(images), d)`` float32 L2-normalised image embeddings; ``vision_states`` are the vision tower's
        last hidden states of these images when the caller already has them (see ``reuses_vision_of``), and
        ``pixel_values`` ``image_processor``'s pixels of them, made ahead."""
        import torch
        from torch.nn.functional import normalize

        parts = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                end = start + self.batch_size
                if vision_states is not None:
                    embeds = self._project_vision(vision_states[start:end])
                else:
                    pixels = pixel_rows(self.image_processor, images, pixel_values, start, end)
                    embeds = self._embed_images(pixels.to(self.device, self.model.dtype))
                parts.append(normalize(embeds.float(), dim=-1))
        return torch.cat(parts) if parts else torch.zeros(0, self.dimension)

    def text_embeddings(self, texts: list[str]):
        """``(len(texts), d)`` float32 L2-normalised text embeddings."""
        import torch
        from torch.nn.functional import normalize

        parts = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.processor.tokenizer(
                    texts[start : start + self.batch_size],
                    padding="longest",
                    truncation=True,
                    max_length=self.max_text_tokens,
                    return_tensors="pt",
                ).to(self.device)
                embeds = self._embed_texts(tokens["input_ids"], tokens["attention_mask"])
                parts.append(normalize(embeds.float(), dim=-1))
        return torch.cat(parts) if parts else torch.zeros(0, self.dimension)

    def embed(
        self, images: list, candidates: list[list[str]], vision_states=None, pixel_values=None
    ) -> CandidateEmbeddings:
        """The embeddings of ``images`` and of every distinct text among their ``candidates``."""
        texts = list(dict.fromkeys(text for group in candidates for text in group))
        return CandidateEmbeddings(
            self.image_embeddings(images, vision_states, pixel_values),
            self.text_embeddings(texts),
            {text: row for row, text in enumerate(texts)},
        )

    def score(self, images: list, candidates: list[list[str]], vision_states=None) -> list[list[float]]:
        """For each image, the cosine similarity of each of its candidate captions, in order."""
        embeddings = self.embed(images, candidates, vision_states)
        return [embeddings.similarities(i, group) for i, group in enumerate(candidates)]

    def _project_vision(self, states):
        raise NotImplementedError(f"{type(self).__name__} has no vision tower shared with an ITM scorer")


@dataclass(frozen=True)
class CandidateEmbeddings:
    """Normalised embeddings of a batch: ``images`` row ``i`` is image ``i``; ``texts`` row ``row[text]``."""

    images: Any
    texts: Any
    row: dict[str, int]

    def text(self, text: str):
        return self.texts[self.row[text]]

    def pooled(self, sizes: list[int]) -> CandidateEmbeddings:
        """One image row per clip, the clips being ``sizes`` consecutive rows each: the mean of the frames'
        normalised embeddings, normalised again (CLIP4Clip's meanP). A clip of one frame keeps its row as is."""
        import torch
        from torch.nn.functional import normalize

        if all(size == 1 for size in sizes):
            return self
        rows, start = [], 0
        for size in sizes:
            frames = self.images[start : start + size]
            rows.append(frames[0] if size == 1 else normalize(frames.mean(dim=0), dim=-1))
            start += size
        return CandidateEmbeddings(torch.stack(rows), self.texts, self.row)

    def similarities(self, image: int, texts: list[str]) -> list[float]:
        """Cosines of image ``image`` with each of ``texts``."""
        if not texts:
            return []
        return (self.texts[[self.row[t] for t in texts]] @ self.images[image]).tolist()


class ItcSimilarity(_Similarity):
    """BLIP's image-text contrastive head: ``vision_proj`` of the vision tower's first token and ``text_proj``
    of the unimodal text encoder's first token, as ``BlipForImageTextRetrieval(..., use_itm_head=False)``.

    Built on the filter's own ``BlipForImageTextRetrieval``, it takes the vision states the ITM pass already
    computed, so only the text side costs anything.

    Args:
        model: a loaded ``BlipForImageTextRetrieval`` in eval mode (the ITM filter's).
        processor: its ``BlipProcessor``.
        device: where ``model`` lives.
        batch_size: images or texts per forward pass.
        max_text_tokens: captions are truncated to this many tokens (default: the model's limit).
    """

    model_class = "BlipForImageTextRetrieval"

    def __init__(self, model, processor, device="cpu", batch_size=32, max_text_tokens=None):
        limits = [processor.tokenizer.model_max_length, model.config.text_config.max_position_embeddings]
        super().__init__(model, processor, device, batch_size, text_limit(limits, max_text_tokens))
        self.dimension = model.config.image_text_hidden_size

    @classmethod
    def sharing(cls, scorer, **options) -> ItcSimilarity:
        """The ITC head of an ``ItmScorer``'s model, without loading it a second time."""
        return cls(scorer.model, scorer.processor, scorer.device, **options)

    def reuses_vision_of(self, scorer) -> bool:
        return getattr(scorer, "model", None) is self.model

    def _embed_images(self, pixel_values):
        return self._project_vision(self.model.vision_model(pixel_values=pixel_values).last_hidden_state)

    def _project_vision(self, states):
        return self.model.vision_proj(states[:, 0, :])

    def _embed_texts(self, input_ids, attention_mask):
        states = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.model.text_proj(states[:, 0, :])


class ClipSimilarity(_Similarity):
    """Any ``CLIPModel`` checkpoint with its processor: ``get_image_features`` and ``get_text_features``.

    Args:
        model: a loaded ``CLIPModel`` in eval mode.
        processor: its ``CLIPProcessor``.
        device: where ``model`` lives.
        batch_size: images or texts per forward pass.
        max_text_tokens: captions are truncated to this many tokens (default: the model's limit, 77 for
            OpenAI's checkpoints).
    """

    model_class, processor_class = "CLIPModel", "CLIPProcessor"

    def __init__(self, model, processor, device="cpu", batch_size=32, max_text_tokens=None):
        limits = [model.config.text_config.max_position_embeddings]
        super().__init__(model, processor, device, batch_size, text_limit(limits, max_text_tokens))
        self.dimension = model.config.projection_dim

    def _embed_images(self, pixel_values):
        # transformers 5 returns an output object here (4.x returned the tensor): the embedding is the pooler's.
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def _embed_texts(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def load_similarity(name: str, scorer=None, device="auto", dtype="float32", trust_remote_code=False, **options):
    """The similarity backend ``similarity.model`` names: ``itc`` (the ITC head of ``scorer``'s model, or of
    ``scorer`` itself when it is a checkpoint name) or a CLIP checkpoint (hub id, directory or ``embedded:``)."""
    if name == ITC:
        if isinstance(scorer, str):
            return ItcSimilarity.from_pretrained(scorer, device, dtype, trust_remote_code, **options)
        return ItcSimilarity.sharing(scorer, **options)
    return ClipSimilarity.from_pretrained(name, device, dtype, trust_remote_code, **options)

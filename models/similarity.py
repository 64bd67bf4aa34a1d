"""Contrastive similarity: the cosine of L2-normalised image and text embeddings, as CLIP, SigLIP and BLIP's ITC
head compute it. Two backends, one interface (``image_embeddings``, ``text_embeddings`` and ``score``): BLIP's
ITC head, and any dual encoder with ``get_image_features``/``get_text_features``, which can also be the filter
(``DualEncoderFilter``: its match probability where the family has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PretrainedModel, text_limit
from .families import BLIP2_ITM, BLIP_ITM, DUAL_ENCODER, FILTER, SIMILARITY, family_of_model
from .pixels import ImageInputs, pixel_rows

# A similarity.model value that means "the filter's own contrastive head" (BLIP's ITC head, or a dual-encoder
# filter's own embeddings) rather than a checkpoint name.
ITC = "itc"


def embedding_checkpoint(similarity_model: str, filter_model: str) -> str:
    """The checkpoint whose image embeddings a run with these ``similarity.model`` and ``filter.model`` writes."""
    return filter_model if similarity_model == ITC else similarity_model


class _Similarity(PretrainedModel):
    """What both backends share: scoring candidates from the two embedding functions.

    Subclasses set ``role``, ``kind`` and ``dimension`` and implement ``_embed_images(pixel_values)`` and
    ``_embed_texts(tokens)`` (unnormalised, in the model's dtype).
    """

    role = SIMILARITY
    padding = "longest"  # how a batch of texts is padded; SigLIP's own length (families.Family.text_padding)

    def __init__(self, model, processor, device: str, batch_size: int, max_text_tokens: int):
        super().__init__(model, processor, device)
        self.batch_size, self.max_text_tokens = batch_size, max_text_tokens

    @classmethod
    def sharing(cls, scorer, **options):
        """The similarity of the filter's own model (BLIP ITM's ITC head, a dual encoder's embeddings), without
        loading it a second time."""
        return cls(scorer.model, scorer.processor, scorer.device, **options)

    def reuses_vision_of(self, scorer) -> bool:
        """Whether ``image_embeddings`` can start from ``scorer.vision_states``: the filter's own model."""
        return getattr(scorer, "model", None) is self.model

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
                    padding=self.padding,
                    truncation=True,
                    max_length=self.max_text_tokens,
                    return_tensors="pt",
                ).to(self.device)
                embeds = self._embed_texts(tokens)
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
        """Cosines of image ``image`` with each of ``texts``; an image embedded as several vectors (BLIP-2's
        queries) gives each text its best cosine among them, as BLIP-2's ITC scores."""
        if not texts:
            return []
        embedding = self.images[image]
        if embedding.dim() == 1:
            return (self.texts[[self.row[t] for t in texts]] @ embedding).tolist()
        return (self.texts[[self.row[t] for t in texts]] @ embedding.mT).max(dim=-1).values.tolist()


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

    kind = BLIP_ITM

    def __init__(self, model, processor, device="cpu", batch_size=32, max_text_tokens=None):
        limits = [processor.tokenizer.model_max_length, self.text_positions(model.config)]
        super().__init__(model, processor, device, batch_size, text_limit(limits, max_text_tokens))
        self.dimension = model.config.image_text_hidden_size

    @staticmethod
    def text_positions(config) -> int:
        """How many text positions the text encoder has."""
        return config.text_config.max_position_embeddings

    def _embed_images(self, pixel_values):
        return self._project_vision(self.model.vision_model(pixel_values=pixel_values).last_hidden_state)

    def _project_vision(self, states):
        return self.model.vision_proj(states[:, 0, :])

    def _embed_texts(self, tokens):
        states = self.model.text_encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        return self.model.text_proj(states[:, 0, :])


class Blip2ItcSimilarity(ItcSimilarity):
    """BLIP-2's image-text contrastive head: the Q-Former's queries read the image alone and each is projected
    (``vision_projection``), the caption is read alone and its first token projected (``text_projection``), and
    a caption's similarity is its best cosine over the queries, as ``Blip2ForImageTextRetrieval(...,
    use_image_text_matching_head=False)`` computes it. An image's embedding is therefore one vector per query,
    which clip-retrieval's embedding files cannot hold (the launcher refuses ``similarity.embeddings`` with it).

    Args: as ``ItcSimilarity``'s, with a ``Blip2ForImageTextRetrieval`` and its processor.
    """

    kind = BLIP2_ITM

    @staticmethod
    def text_positions(config) -> int:
        return config.qformer_config.max_position_embeddings

    def _project_vision(self, states):
        import torch

        queries = self.model.query_tokens.expand(states.shape[0], -1, -1)
        mask = torch.ones(states.shape[:-1], dtype=torch.long, device=states.device)
        read = self.model.qformer(
            query_embeds=queries, encoder_hidden_states=states, encoder_attention_mask=mask
        ).last_hidden_state
        return self.model.vision_projection(read.to(self.model.vision_projection.weight.dtype))

    def _embed_texts(self, tokens):
        states = self.model.qformer(
            query_embeds=self.model.embeddings(input_ids=tokens["input_ids"]),
            query_length=0,
            attention_mask=tokens["attention_mask"],
        ).last_hidden_state
        return self.model.text_projection(states[:, 0, :].to(self.model.text_projection.weight.dtype))


class DualEncoder(_Similarity):
    """Any dual encoder of ``models.families`` (CLIP, MetaCLIP 2, SigLIP, SigLIP 2) with its processor: the cosine
    of ``get_image_features`` and ``get_text_features``.

    Texts are padded as the family was trained (SigLIP: to its full length, ``padding="max_length"``, since its
    text tower pools the last position) and passed with the attention mask only when the tokenizer makes one
    (SigLIP's does not).

    Args:
        model: a loaded dual encoder in eval mode (``CLIPModel``, ``SiglipModel``, ...).
        processor: its processor.
        device: where ``model`` lives.
        batch_size: images or texts per forward pass.
        max_text_tokens: captions are truncated to this many tokens (default: the model's limit: 77 for OpenAI's
            CLIP, 64 for SigLIP).
    """

    kind = DUAL_ENCODER

    def __init__(self, model, processor, device="cpu", batch_size=32, max_text_tokens=None):
        limits = [model.config.text_config.max_position_embeddings]
        super().__init__(model, processor, device, batch_size, text_limit(limits, max_text_tokens))
        self.family = family_of_model(model)
        self.padding = self.family.text_padding
        # CLIP names its embedding width; SigLIP's text head projects to its own projection_size
        self.dimension = getattr(model.config, "projection_dim", None) or model.config.text_config.projection_size

    def _embed_images(self, pixel_values):
        # transformers 5 returns an output object here (4.x returned the tensor): the embedding is the pooler's.
        if isinstance(pixel_values, ImageInputs):  # SigLIP 2's patches come with their mask and grid
            return self.model.get_image_features(**dict(pixel_values.items())).pooler_output
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def _project_vision(self, states):
        return states  # a dual encoder's vision states are its unnormalised image embeddings

    def _embed_texts(self, tokens):
        inputs = {name: tokens[name] for name in ("input_ids", "attention_mask") if name in tokens}
        return self.model.get_text_features(**inputs).pooler_output


class DualEncoderFilter(DualEncoder):
    """A dual encoder as the filter, with the ITM scorer's interface (``vision_states``, ``score``,
    ``score_clips``): a candidate's score is the family's calibrated match probability, SigLIP's
    ``sigmoid(exp(logit_scale) * cosine + logit_bias)``, or, for a family with none (CLIP: ``calibrated`` is
    False, and the run must select by ``filter.score: similarity``), the cosine itself.

    Args: as ``DualEncoder``'s.
    """

    role = FILTER

    @property
    def calibrated(self) -> bool:
        return self.family.probability

    def vision_states(self, images: list, pixel_values=None):
        """The unnormalised image embeddings of ``images`` (a clip's frames are images here), for ``score_clips``
        and for a similarity model sharing this model to start from. ``pixel_values``, when given, are
        ``image_processor``'s pixels of ``images``, made ahead."""
        import torch

        parts = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                pixels = pixel_rows(self.image_processor, images, pixel_values, start, start + self.batch_size)
                parts.append(self._embed_images(pixels.to(self.device, self.model.dtype)))
        return torch.cat(parts) if parts else None

    def score(self, images: list, candidates: list[list[str]], vision_states=None) -> list[list[float]]:
        """For each image, the score of each of its candidate captions, in order; ``vision_states`` (from
        ``vision_states(images)``) spares the vision pass."""
        return self.score_clips([[image] for image in images], candidates, vision_states)

    def score_clips(self, clips: list[list], candidates: list[list[str]], vision_states=None) -> list[list[float]]:
        """For each clip (a list of frames; an image is a clip of one), the mean over its frames of each
        candidate's score, in order, as the ITM scorer pools: a caption must fit the whole clip."""
        import torch

        frames = [frame for clip in clips for frame in clip]
        if vision_states is None:
            vision_states = self.vision_states(frames)
        embeddings = self.embed(frames, candidates, vision_states=vision_states)
        cosines = embeddings.texts @ embeddings.images.T  # (texts, frames)
        if self.calibrated:
            scale, bias = self.model.logit_scale.float().exp(), self.model.logit_bias.float()
            cosines = torch.sigmoid(cosines * scale.to(cosines.device) + bias.to(cosines.device))
        out, first = [], 0
        for clip, texts in zip(clips, candidates, strict=True):
            rows = cosines[[embeddings.row[t] for t in texts], first : first + len(clip)]
            out.append([sum(row.tolist()) / len(clip) if len(clip) else 0.0 for row in rows])
            first += len(clip)
        return out


def load_similarity(name: str, scorer=None, device="auto", dtype="float32", trust_remote_code=False, **options):
    """The similarity model ``similarity.model`` names: ``itc``, the filter's own contrastive head (of ``scorer``,
    a loaded filter, or of the checkpoint ``scorer`` names: BLIP's ITC head, or a dual encoder's own embeddings),
    or a checkpoint of a family that serves similarity (``models.families``)."""
    from . import families

    if name != ITC:
        return families.load(SIMILARITY, name, device, dtype, trust_remote_code, **options)
    if isinstance(scorer, str):
        return families.load(SIMILARITY, scorer, device, dtype, trust_remote_code, **options)
    if isinstance(scorer, DualEncoderFilter):
        return DualEncoder.sharing(scorer, **options)
    if scorer.kind == BLIP2_ITM:
        return Blip2ItcSimilarity.sharing(scorer, **options)
    return ItcSimilarity.sharing(scorer, **options)

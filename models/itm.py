"""Image-text matching scores from a BLIP ITM model, with each image's vision features computed once."""

from __future__ import annotations

from .base import PretrainedModel, text_limit
from .families import BLIP2_ITM, BLIP_ITM, FILTER
from .pixels import pixel_rows


class ItmScorer(PretrainedModel):
    """Scores captions against images: the probability of "match" from the ITM head (softmax index 1).

    The Hugging Face forward runs the vision encoder once per image-text pair; here it runs once per
    image and its features are reused for every candidate caption, which is most of the cost.

    Args:
        model: a loaded ``BlipForImageTextRetrieval`` in eval mode.
        processor: its ``BlipProcessor``.
        device: where ``model`` lives.
        batch_size: image-text pairs per text-encoder pass (and images per vision pass).
        max_text_tokens: captions are truncated to this many tokens (default: the model's limit).
    """

    role, kind = FILTER, BLIP_ITM
    calibrated = True  # its score is the ITM head's match probability

    def __init__(self, model, processor, device="cpu", batch_size=32, max_text_tokens=None):
        super().__init__(model, processor, device)
        self.batch_size = batch_size
        limits = [processor.tokenizer.model_max_length, self.text_positions(model.config)]
        self.max_text_tokens = text_limit(limits, max_text_tokens)

    @staticmethod
    def text_positions(config) -> int:
        """Tokens the matcher's text encoder has positions for."""
        return config.text_config.max_position_embeddings

    def vision_states(self, images: list, pixel_values=None):
        """The vision tower's last hidden states of ``images`` (a clip's frames are images here), for ``score``
        and ``score_clips`` and for the ITC head of the same model (``models.similarity.ItcSimilarity``) to
        share. ``pixel_values``, when given, are ``image_processor``'s pixels of ``images``, made ahead."""
        import torch

        with self._lock, torch.inference_mode():
            return self._image_features(images, pixel_values)

    def score(self, images: list, candidates: list[list[str]], vision_states=None) -> list[list[float]]:
        """For each image, the match probability of each of its candidate captions, in order;
        ``vision_states`` (from ``vision_states(images)``) spares the vision pass."""
        return self.score_clips([[image] for image in images], candidates, vision_states)

    def score_clips(self, clips: list[list], candidates: list[list[str]], vision_states=None) -> list[list[float]]:
        """For each clip (a list of frames; an image is a clip of one), the mean over its frames of each
        candidate's match probability, in order: a caption must fit the whole clip, not one moment of it.

        Each frame's vision features are computed once (or taken from ``vision_states`` of all frames, in
        order) and reused for every candidate; vision passes take ``batch_size`` frames at a time and text
        passes ``batch_size`` frame-caption pairs.
        """
        import torch

        frames = [frame for clip in clips for frame in clip]
        first = [0]
        for clip in clips:
            first.append(first[-1] + len(clip))
        # One pair per candidate and frame, grouped by (clip, candidate) in order, frames in clip order.
        pairs = [
            (f, text) for c, texts in enumerate(candidates) for text in texts for f in range(first[c], first[c + 1])
        ]
        # Pairs of similar length share a text batch, so little of each batch is padding.
        order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][1]))
        scores: list[float] = [0.0] * len(pairs)
        with self._lock, torch.inference_mode():
            features = self._image_features(frames) if vision_states is None else vision_states
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for k, value in zip(chunk, self._score_pairs(features, [pairs[k] for k in chunk]), strict=True):
                    scores[k] = value
        out, position = [], 0
        for c, texts in enumerate(candidates):
            n = first[c + 1] - first[c]
            means = []
            for _ in texts:
                means.append(sum(scores[position : position + n]) / n if n else 0.0)
                position += n
            out.append(means)
        return out

    def _image_features(self, images: list, pixel_values=None):
        import torch

        parts = []
        for start in range(0, len(images), self.batch_size):
            chunk = pixel_rows(self.image_processor, images, pixel_values, start, start + self.batch_size)
            parts.append(
                self.model.vision_model(pixel_values=chunk.to(self.device, self.model.dtype)).last_hidden_state
            )
        return torch.cat(parts) if parts else None

    def _pair_inputs(self, features, pairs: list[tuple[int, str]]):
        """The pairs' texts tokenised (padded to the longest, truncated to what the text encoder reads) and
        each pair's image features, gathered from ``features`` by image index."""
        import torch

        tokens = self.processor.tokenizer(
            [text for _, text in pairs],
            padding="longest",
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        ).to(self.device)
        return tokens, features[torch.tensor([i for i, _ in pairs], device=features.device)]

    def _score_pairs(self, features, pairs: list[tuple[int, str]]) -> list[float]:
        import torch

        tokens, image_embeds = self._pair_inputs(features, pairs)
        states = grounded_text_states(self.model, image_embeds, tokens["input_ids"], tokens["attention_mask"])
        logits = match_logits(self.model, states).float()
        return torch.softmax(logits, dim=-1)[:, 1].tolist()


class Blip2ItmScorer(ItmScorer):
    """BLIP-2's matcher (``Blip2ForImageTextRetrieval``): the Q-Former reads its learned queries and the caption
    together while attending to the image, and the ITM head's match probability is averaged over the queries, as
    ``Blip2ForImageTextRetrieval(..., use_image_text_matching_head=True)`` computes it. The vision tower runs once
    per image, as for BLIP.

    Args: as ``ItmScorer``'s, with a ``Blip2ForImageTextRetrieval`` and its processor (the Q-Former's tokenizer).
    """

    kind = BLIP2_ITM

    @staticmethod
    def text_positions(config) -> int:
        return config.qformer_config.max_position_embeddings

    def _score_pairs(self, features, pairs: list[tuple[int, str]]) -> list[float]:
        import torch

        tokens, image_embeds = self._pair_inputs(features, pairs)
        queries = self.model.query_tokens.expand(len(pairs), -1, -1)
        query_mask = torch.ones(queries.shape[:-1], dtype=torch.long, device=queries.device)
        states = self.model.qformer(
            query_embeds=self.model.embeddings(input_ids=tokens["input_ids"], query_embeds=queries),
            query_length=queries.shape[1],
            attention_mask=torch.cat([query_mask, tokens["attention_mask"]], dim=1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device),
        ).last_hidden_state
        logits = self.model.itm_head(states[:, : queries.shape[1], :].to(self.model.itm_head.weight.dtype))
        return torch.softmax(logits.mean(dim=1).float(), dim=-1)[:, 1].tolist()


# The two functions below are the ITM forward without the vision tower, kept apart from ItmScorer so that the
# demo filter's training (which needs gradients, where score() runs under inference_mode) computes exactly
# what the pipeline scores with.


def grounded_text_states(model, image_embeds, input_ids, attention_mask):
    """The image-grounded text encoder's last hidden states, ``(texts, tokens, hidden)``: text ``i`` read
    while attending to ``image_embeds[i]`` (the vision tower's output, one row per text, every patch attended).

    Args:
        model: a ``BlipForImageTextRetrieval``.
        image_embeds: ``(texts, patches, hidden)`` vision features, repeated per text as needed.
        input_ids, attention_mask: the tokenised texts.
    """
    import torch

    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    return model.text_encoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
    ).last_hidden_state


def match_logits(model, states):
    """ITM logits ``(texts, 2)`` (index 1: match) from ``grounded_text_states``: the ITM head on each text's
    first token, as ``BlipForImageTextRetrieval(..., use_itm_head=True)`` computes them."""
    return model.itm_head(states[:, 0, :])

"""Beam ``ModelHandler`` adapters, so the captioner, the ITM scorer and the similarity scorer drop into any
``RunInference``.

The capfilt pipeline itself calls the plain classes per shard; these are for users composing their own
Beam pipelines: ``images | RunInference(CaptionerModelHandler("Salesforce/blip-image-captioning-base"))``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from . import families
from .captioner import Captioner
from .similarity import ITC, load_similarity


class _Handler(ModelHandler):
    """What the adapters share: the checkpoint and how to load it, the batch size, the metrics namespace.

    Subclasses set ``role`` (``models.families``: the family table picks the wrapper that loads the checkpoint
    in it) and ``namespace``, and implement ``run_inference``.

    Args:
        model: hub id, directory or ``embedded:NAME``.
        batch_size: most examples per batch.
        device, dtype, trust_remote_code: as in ``models.base.PretrainedModel.load``.
        **options: the wrapper's constructor options.
    """

    role: str
    namespace: str

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "float32",
        trust_remote_code: bool = False,
        **options,
    ):
        super().__init__()
        self._model, self._batch_size = model, batch_size
        self._load = dict(device=device, dtype=dtype, trust_remote_code=trust_remote_code, **options)

    def load_model(self):
        return families.load(self.role, self._model, **self._load)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return self.namespace


class _PairScoringHandler(_Handler):
    """Scores ``(image, [caption, ...])`` examples with a model whose ``score(images, candidates)`` returns
    one list of scores per image."""

    def run_inference(self, batch: Sequence, model, inference_args=None) -> Iterable[PredictionResult]:
        scores = model.score([image for image, _ in batch], [list(texts) for _, texts in batch])
        return [PredictionResult(example, s, self._model) for example, s in zip(batch, scores, strict=True)]


class CaptionerModelHandler(_Handler):
    """PIL images in; ``PredictionResult(image, [caption, ...])`` out.

    Args:
        model: hub id, directory or ``embedded:NAME``.
        seed: sampling seed of every batch (batches RunInference forms are not fixed, so captions are
            reproducible only for the same batches).
        batch_size: most images per batch.
        **load: device, dtype and trust_remote_code (``models.base.PretrainedModel.load``), and the Captioner's
            sampling options (prompt, num_captions, top_p, min_length, max_length).
    """

    role, namespace = families.CAPTIONER, "capfilt_captioner"

    def __init__(self, model: str, seed: int = 0, batch_size: int = 16, **load):
        super().__init__(model, batch_size, **load)
        self._seed = seed

    def run_inference(self, batch: Sequence, model: Captioner, inference_args=None) -> Iterable[PredictionResult]:
        captions = model.caption(list(batch), seed=self._seed)
        return [PredictionResult(image, texts, self._model) for image, texts in zip(batch, captions, strict=True)]


class ItmModelHandler(_PairScoringHandler):
    """``(image, [caption, ...])`` in; ``PredictionResult(example, [match probability, ...])`` out: the filter's
    scores, from a BLIP ITM checkpoint or a dual encoder (SigLIP's sigmoid; a CLIP's cosine).

    Args:
        model: hub id, directory or ``embedded:NAME``.
        batch_size: most examples per batch.
        device, dtype, trust_remote_code: as in ``models.base.PretrainedModel.load``.
        **options: the scorer's ``max_text_tokens`` (its pairs per pass keep their default).
    """

    role, namespace = families.FILTER, "capfilt_itm"


class SimilarityModelHandler(_PairScoringHandler):
    """``(image, [caption, ...])`` in; ``PredictionResult(example, [cosine similarity, ...])`` out.

    Args:
        model: a dual encoder checkpoint (SigLIP, CLIP, ...: hub id, directory or ``embedded:NAME``), or ``itc``
            for the contrastive head of the filter checkpoint named by ``itm_model``.
        itm_model: the filter checkpoint (BLIP ITM, or a dual encoder) whose contrastive head ``itc`` means.
        batch_size: most examples per batch.
        **load: device, dtype and trust_remote_code (``models.base.PretrainedModel.load``), and the scorer's
            ``max_text_tokens`` (its images or texts per pass keep their default).
    """

    role, namespace = families.SIMILARITY, "capfilt_similarity"

    def __init__(self, model: str, itm_model: str | None = None, batch_size: int = 32, **load):
        if model == ITC and not itm_model:
            raise ValueError("model='itc' needs itm_model, the filter checkpoint whose contrastive head it is")
        super().__init__(model, batch_size, **load)
        self._itm_model = itm_model

    def load_model(self):
        return load_similarity(self._model, self._itm_model, **self._load)

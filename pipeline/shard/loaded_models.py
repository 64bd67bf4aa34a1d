"""The models of one worker process: loaded from the run's config, once, with the collector paused."""

from __future__ import annotations

from .. import collector
from ..config import RunConfig


class LoadedModels:
    """The captioner, filter (BLIP ITM or a dual encoder) and similarity scorer (None when off) of one worker
    process (a class, so ``Shared`` can hold a weak reference)."""

    def __init__(self, captioner, scorer, similarity=None):
        self.captioner, self.scorer, self.similarity = captioner, scorer, similarity

    def seeing_pixels(self) -> list:
        """The models that take pixels made ahead: the captioner (a VLM's processor makes its own with its prompt),
        the filter, and a similarity model with its own vision tower (the filter's ITC head reuses the filter's
        vision states)."""
        models = [m for m in (self.captioner, self.scorer) if not getattr(m, "makes_own_pixels", False)]
        if self.similarity is not None and not self.similarity.reuses_vision_of(self.scorer):
            models.append(self.similarity)
        return models


def load_models(config: RunConfig, threads: int) -> LoadedModels:
    import torch

    from ...models import families
    from ...models.similarity import load_similarity

    if threads:
        torch.set_num_threads(threads)
    runtime = dict(
        device=config.runtime.device, dtype=config.runtime.dtype, trust_remote_code=config.runtime.trust_remote_code
    )
    c, f = config.captioner, config.filter
    captioner = families.load(
        families.CAPTIONER,
        c.model,
        **runtime,
        prompt=c.prompt,
        instruction=c.instruction,
        decoding=c.decoding,
        num_captions=c.num_captions,
        top_p=c.top_p,
        min_length=c.min_length,
        max_length=c.max_length,
    )
    # The family table picks the filter's wrapper: BLIP's ITM head, or a dual encoder (SigLIP, CLIP, ...).
    scorer = families.load(
        families.FILTER, f.model, **runtime, batch_size=f.batch_size, max_text_tokens=f.max_text_tokens
    )
    problem = families.score_problem(f.model, scorer.model.config.to_dict(), f.score)
    if problem:  # preflight said so before any work, unless it could not read the checkpoint (a hub id not cached)
        raise families.ModelRoleError(problem)
    s = config.similarity
    similarity = None
    if s.enabled:
        options = dict(batch_size=s.batch_size, max_text_tokens=s.max_text_tokens)
        similarity = load_similarity(s.model, scorer, **runtime, **options)
    return LoadedModels(captioner, scorer, similarity)


def load_models_once(config: RunConfig, threads: int) -> LoadedModels:
    """``load_models`` with the collector paused (torch and transformers import inside), then its objects frozen.

    torch, transformers and Beam leave ~3500 modules of long-lived objects. Freezing them keeps the cyclic
    collector from rescanning them in every full collection, and cuts a worker process's exit (where the
    interpreter's final collections walked them all) from ~1.3 s to ~0.2 s; the local multi-process runner
    stops its workers one after another, so that was paid once per worker at the end of every run.
    """
    with collector.paused():
        models = load_models(config, threads)
        collector.settle()
    return models

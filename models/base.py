"""The one base of the model wrappers: a checkpoint loaded safely, its processor, and one caller at a time.

A role (captioner, ITM matcher, dual encoder) is a subclass holding the batch methods the pipeline calls; it
names the transformers classes it loads in ``model_class`` and ``processor_class``, by name, so that importing
``models`` costs nothing until a checkpoint loads.

Where the next pieces go, both in ``PretrainedModel.load``, before any work:
- model families: choose the class from the checkpoint's ``config.json`` (``model_type``, ``architectures``)
  through transformers' ``Auto*`` mappings rather than ``model_class`` alone; a family subclass adds only what
  differs (prompt building, padding side, which head gives the score).
- role checks: refuse a checkpoint the role cannot use, e.g. one whose loading leaves weights uninitialised
  (``from_pretrained(..., output_loading_info=True)``'s ``missing_keys``), with a sentence that says what the
  checkpoint is and what the role needs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .loading import pick_device, resolve_dtype, resolve_model


class PretrainedModel:
    """A transformers model and its processor on one device, used by one caller at a time.

    Subclasses set ``model_class`` (and ``processor_class`` when it is not ``BlipProcessor``) to the names of
    transformers classes, and take ``(model, processor, device, **options)`` in their constructor.

    Args:
        model: a loaded ``model_class`` in eval mode.
        processor: its ``processor_class``.
        device: where ``model`` lives.
    """

    model_class = ""
    processor_class = "BlipProcessor"

    def __init__(self, model, processor, device="cpu"):
        self.model, self.processor, self.device = model, processor, device
        # A worker's threads share one wrapper, and every batch method holds this lock: generate() draws from
        # torch's global generator, so seeded captions are exact only when one caller samples at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, name: str, device="auto", dtype="float32", trust_remote_code=False, **options):
        """Load from a hub id, a directory or ``embedded:NAME`` (``load``); ``options`` are the constructor's."""
        model, processor, device = cls.load(name, device, dtype, trust_remote_code)
        return cls(model, processor, device, **options)

    @classmethod
    def load(cls, name: str, device="auto", dtype="float32", trust_remote_code=False):
        """``(model, processor, device)``: ``model_class`` in eval mode on ``device`` and ``processor_class``,
        read from checkpoint ``name``.

        Weights come only from safetensors files (a pickle can run code); nothing is downloaded when ``name``
        is a local directory.

        Args:
            name: a hub id, a directory, a Beam filesystem URL or ``embedded:NAME`` (``loading.resolve_model``).
            device: ``auto``, ``cpu`` or ``cuda[:N]`` (``loading.pick_device``).
            dtype: one of ``loading.DTYPES`` or ``auto`` (``loading.resolve_dtype``).
            trust_remote_code: let transformers run code that comes with the checkpoint.
        """
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = resolve_model(name)
        local = Path(path).is_dir()
        device = pick_device(device)
        source = dict(trust_remote_code=trust_remote_code, local_files_only=local)
        model_class = getattr(transformers, cls.model_class)
        model = model_class.from_pretrained(
            path, dtype=getattr(torch, resolve_dtype(dtype, device)), use_safetensors=True, **source
        )
        processor = getattr(transformers, cls.processor_class).from_pretrained(path, **source)
        return model.to(device).eval(), processor, device

    @property
    def image_processor(self):
        return self.processor.image_processor


def text_limit(limits: list[int], requested: int | None) -> int:
    """Tokens a caption is truncated to: the least of the model's ``limits`` and ``requested`` when given."""
    return min(limits + ([requested] if requested else []))

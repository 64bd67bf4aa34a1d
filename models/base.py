"""The one base of the model wrappers: a checkpoint loaded safely, its processor, and one caller at a time.

A role (captioner, ITM matcher, dual encoder) is a subclass holding the batch methods the pipeline calls; it
names the ``role`` it serves and the ``kind`` of checkpoint it runs. Which transformers classes load a
checkpoint is the family table's (``models.families``), chosen by the checkpoint's ``config.json``, and so is
the check that the checkpoint can serve the role at all. ``load`` then refuses weights that did not all load:
transformers would initialise them at random with only a logged warning.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .families import ROLE_KEYS, ModelRoleError, checked_family
from .loading import pick_device, resolve_dtype, resolve_model

# Missing weights named in a refusal: enough to see which part of the model they are, not a page of them.
SHOWN_MISSING_KEYS = 4


class PretrainedModel:
    """A transformers model and its processor on one device, used by one caller at a time.

    Subclasses set ``role`` (``families.CAPTIONER``, ``FILTER`` or ``SIMILARITY``) and ``kind`` (the
    ``families.Family.kind`` they run), and take ``(model, processor, device, **options)`` in their constructor.

    Args:
        model: a loaded model of the checkpoint's family (``families.Family.model_class``) in eval mode.
        processor: its processor.
        device: where ``model`` lives.
    """

    role = ""
    kind = ""

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
        """``(model, processor, device)``: the model of checkpoint ``name``'s family in eval mode on ``device``,
        and its processor.

        The checkpoint must serve this wrapper's role (``families.checked_family``) and every weight of its model
        must come from the checkpoint: ``ModelRoleError`` otherwise. Weights come only from safetensors files (a
        pickle can run code); nothing is downloaded when ``name`` is a local directory.

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
        family = checked_family(cls.role, name, checkpoint_config(path, trust_remote_code))
        if family.kind != cls.kind:  # a caller's slip, not a user's: families.load picks the wrapper
            raise ModelRoleError(f"{cls.__name__} does not run {family.name} checkpoints; load {name!r} by its role")
        model_class = getattr(transformers, family.model_class)
        model, info = model_class.from_pretrained(
            path,
            dtype=getattr(torch, resolve_dtype(dtype, device)),
            use_safetensors=True,
            output_loading_info=True,
            **source,
        )
        problem = missing_weights_problem(cls.role, name, family, info["missing_keys"])
        if problem:
            raise ModelRoleError(problem)
        processor = getattr(transformers, family.processor_class).from_pretrained(path, **source)
        return model.to(device).eval(), processor, device

    @property
    def image_processor(self):
        return self.processor.image_processor

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in this model's tokens before any truncation, special tokens included: what a
        scorer's ``max_text_tokens`` caps, so a caller can tell which texts were scored on a prefix."""
        if not texts:
            return []
        return [len(ids) for ids in self.processor.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def missing_weights_problem(role: str, name: str, family, missing) -> str | None:
    """Why checkpoint ``name`` cannot run as ``role``'s model when loading it left the weights ``missing``
    uninitialised (transformers would fill them at random with a logged warning), or None when none are.
    transformers leaves tied weights (BLIP's decoder output tied to its word embeddings) and buffers it rebuilds
    out of ``missing_keys``, so anything listed was initialised at random."""
    missing = sorted(missing)
    if not missing:
        return None
    shown = ", ".join(missing[:SHOWN_MISSING_KEYS]) + (", ..." if len(missing) > SHOWN_MISSING_KEYS else "")
    return (
        f"{ROLE_KEYS[role]}: {name!r} loads into {family.model_class} with {len(missing)} weight(s) missing "
        f"({shown}); capfilt never runs a model with random weights"
    )


def check_loadable(role: str, name: str, trust_remote_code=False) -> None:
    """``ModelRoleError`` when checkpoint ``name`` (a local directory or ``embedded:NAME``, already checked to
    serve ``role``) would load with weights missing, or has no processor: the model is built on the meta device,
    so no tensor is read or allocated, and the launcher can say so before any work, in the words ``load`` uses."""
    import transformers
    from transformers.utils import logging as hf_logging

    path = resolve_model(name)
    family = checked_family(role, name, checkpoint_config(path, trust_remote_code))
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would list every missing key; the refusal names a few
    source = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    try:
        _, info = getattr(transformers, family.model_class).from_pretrained(
            path, device_map="meta", use_kernels=False, use_safetensors=True, output_loading_info=True, **source
        )
        getattr(transformers, family.processor_class).from_pretrained(path, **source)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise ModelRoleError(f"{ROLE_KEYS[role]}: {name!r} does not load as {family.model_class}: {first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    problem = missing_weights_problem(role, name, family, info["missing_keys"])
    if problem:
        raise ModelRoleError(problem)


def checkpoint_config(path: str, trust_remote_code=False) -> dict:
    """The ``config.json`` contents of a resolved checkpoint (a local directory, or a hub id, fetched into the
    cache as ``from_pretrained`` would fetch it)."""
    from transformers import PretrainedConfig

    local = Path(path).is_dir()
    config, _ = PretrainedConfig.get_config_dict(path, local_files_only=local, trust_remote_code=trust_remote_code)
    return config


def text_limit(limits: list[int], requested: int | None) -> int:
    """Tokens a caption is truncated to: the least of the model's ``limits`` and ``requested`` when given."""
    return min(limits + ([requested] if requested else []))

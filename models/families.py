"""Which checkpoints can serve which role, as data: a checkpoint's ``config.json`` (``model_type``,
``architectures``) picks its family from ``FAMILIES``; the family says which roles it serves, which transformers
classes load it and what differs between families (how texts are padded, whether the score is a probability).

A checkpoint that cannot serve its role is refused with one sentence that says what it is and what the role
needs: ``pipeline/preflight.py`` says it before any work, and ``PretrainedModel.load`` says it again wherever a
model is loaded, so no path runs a model whose head transformers had to invent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CAPTIONER, FILTER, SIMILARITY = "captioner", "filter", "similarity"
ROLE_KEYS = {CAPTIONER: "captioner.model", FILTER: "filter.model", SIMILARITY: "similarity.model"}
# The wrapper kinds; ``load`` picks the wrapper of a (role, kind) from WRAPPERS.
BLIP_CAPTIONER, BLIP_ITM, DUAL_ENCODER = "blip_captioner", "blip_itm", "dual_encoder"
VLM_CAPTIONER, BLIP2_ITM = "vlm_captioner", "blip2_itm"


class ModelRoleError(ValueError):
    """A checkpoint that cannot serve the role it was given, or whose weights did not all load."""


@dataclass(frozen=True)
class Family:
    """One kind of checkpoint.

    Args:
        name: what a user calls it (``SigLIP 2``).
        kind: which wrapper runs it (``BLIP_CAPTIONER``, ``BLIP_ITM`` or ``DUAL_ENCODER``).
        model_types: ``config.json`` ``model_type`` values of the family.
        architectures: ``config.json`` ``architectures`` that pick the family among checkpoints of the same
            model type (BLIP's captioner and matcher share ``blip``); empty: any.
        roles: the roles it serves.
        model_class, processor_class: the transformers classes that load it, by name.
        what: how a refusal describes it, after its class name.
        probability: its score is a calibrated match probability (an ITM softmax, SigLIP's sigmoid); a dual
            encoder without one (CLIP) can rank by its cosine only.
        text_padding: how texts are padded for its text tower: SigLIP was trained on texts padded to its full
            length and pools the last position, so any other padding changes its embeddings.
        registry: the family is every checkpoint transformers' own image-text-to-text registry lists (the
            vision-language models ``AutoModelForImageTextToText`` loads), not named model types.
        single_vector: its contrastive image embedding is one vector (BLIP-2's ITC embeds an image as one
            vector per query and scores the best of them, which the clip-retrieval embeddings cannot hold).
    """

    name: str
    kind: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    roles: tuple[str, ...]
    model_class: str
    processor_class: str
    what: str
    probability: bool = False
    text_padding: str = "longest"
    registry: bool = False
    single_vector: bool = True

    @property
    def label(self) -> str:
        """The family in a role's needs: BLIP's by its class, since its two heads share one model type."""
        return f"{self.name} ({self.architectures[0]})" if self.architectures else self.name


FAMILIES = (
    Family(
        "BLIP captioning",
        BLIP_CAPTIONER,
        ("blip",),
        ("BlipForConditionalGeneration",),
        (CAPTIONER,),
        "BlipForConditionalGeneration",
        "BlipProcessor",
        "BLIP captioning, with no ITM or ITC head",
    ),
    Family(
        "BLIP ITM",
        BLIP_ITM,
        ("blip",),
        ("BlipForImageTextRetrieval",),
        (FILTER, SIMILARITY),
        "BlipForImageTextRetrieval",
        "BlipProcessor",
        "BLIP image-text matching, which writes no text",
        probability=True,
    ),
    Family(
        "BLIP-2 ITM",
        BLIP2_ITM,
        ("blip-2",),
        ("Blip2ForImageTextRetrieval",),
        (FILTER, SIMILARITY),
        "Blip2ForImageTextRetrieval",
        "AutoProcessor",
        "BLIP-2 image-text matching, which writes no text",
        probability=True,
        single_vector=False,
    ),
    # After BLIP captioning, which the registry lists too and which keeps its own wrapper.
    Family(
        "any vision-language model (AutoModelForImageTextToText)",
        VLM_CAPTIONER,
        (),
        (),
        (CAPTIONER,),
        "AutoModelForImageTextToText",
        "AutoProcessor",
        "a vision-language model, which generates text",
        registry=True,
    ),
    Family(
        "SigLIP",
        DUAL_ENCODER,
        ("siglip",),
        (),
        (FILTER, SIMILARITY),
        "SiglipModel",
        "AutoProcessor",
        "SigLIP, a dual encoder that writes no text",
        probability=True,
        text_padding="max_length",
    ),
    Family(
        "SigLIP 2",
        DUAL_ENCODER,
        ("siglip2",),
        (),
        (FILTER, SIMILARITY),
        "Siglip2Model",
        "AutoProcessor",
        "SigLIP 2, a dual encoder that writes no text",
        probability=True,
        text_padding="max_length",
    ),
    Family(
        "CLIP",
        DUAL_ENCODER,
        ("clip",),
        (),
        (FILTER, SIMILARITY),
        "CLIPModel",
        "AutoProcessor",
        "CLIP, a dual encoder that writes no text",
    ),
    Family(
        "MetaCLIP 2",
        DUAL_ENCODER,
        ("metaclip_2",),
        (),
        (FILTER, SIMILARITY),
        "MetaClip2Model",
        "AutoProcessor",
        "MetaCLIP 2, a dual encoder that writes no text",
    ),
)

# (role, kind) -> "module:class" of the wrapper that runs it, imported when a model loads.
WRAPPERS = {
    (CAPTIONER, BLIP_CAPTIONER): "captioner:Captioner",
    (CAPTIONER, VLM_CAPTIONER): "vlm_captioner:VlmCaptioner",
    (FILTER, BLIP_ITM): "itm:ItmScorer",
    (FILTER, BLIP2_ITM): "itm:Blip2ItmScorer",
    (SIMILARITY, BLIP2_ITM): "similarity:Blip2ItcSimilarity",
    (FILTER, DUAL_ENCODER): "similarity:DualEncoderFilter",
    (SIMILARITY, BLIP_ITM): "similarity:ItcSimilarity",
    (SIMILARITY, DUAL_ENCODER): "similarity:DualEncoder",
}


def identify(config: dict) -> Family | None:
    """The family of a checkpoint from its ``config.json`` contents, or None when capfilt has none for it."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    for family in FAMILIES:
        if family.registry:
            if _image_text_to_text(config):
                return family
            continue
        if model_type in family.model_types and (
            not family.architectures or any(a in family.architectures for a in architectures)
        ):
            return family
    return None


def family_of_model(model) -> Family:
    """The family of a loaded transformers model (its config says what it is, as the checkpoint's did)."""
    family = identify(model.config.to_dict())
    if family is None:
        raise ModelRoleError(f"{type(model).__name__} belongs to no capfilt model family")
    return family


def described(config: dict) -> str:
    """What a checkpoint is, as a user would name it: its class, else its model type."""
    architectures = config.get("architectures") or []
    if architectures:
        return f"a {architectures[0]} checkpoint"
    return f"a checkpoint of model_type {config.get('model_type')!r} that names no architecture"


def needs(role: str) -> str:
    """What ``role`` accepts, from the table: the families serving it, dual encoders grouped."""
    serving = [f for f in FAMILIES if role in f.roles]
    named = [f.label for f in serving if f.kind != DUAL_ENCODER]
    duals = [f.name for f in serving if f.kind == DUAL_ENCODER]
    if duals:
        named.append(f"a dual encoder ({', '.join(duals)})")
    if role == SIMILARITY:
        named.insert(0, "itc (the filter's own)")
        return f"similarity.model needs {_either(named)}"
    return f"the {role} needs {_either(named)}"


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def role_problem(role: str, name: str, config: dict) -> str | None:
    """Why checkpoint ``name`` (its ``config.json`` contents) cannot serve ``role``, in one sentence that
    starts with the config key; None when it can."""
    family = identify(config)
    if family is not None and role in family.roles:
        return None
    head = f"{ROLE_KEYS[role]}: {name!r} is {described(config)}"
    if family is not None:
        return f"{head} ({family.what}); {needs(role)}"
    return f"{head}, which no capfilt model family covers; {needs(role)}"


def score_problem(name: str, config: dict, score: str) -> str | None:
    """Why filter checkpoint ``name`` cannot give the ``filter.score`` named ``score``, or None."""
    family = identify(config)
    if score != "itm" or family is None or family.probability:
        return None
    return (
        f"filter.model: {name!r} is {described(config)} ({family.name}, a dual encoder with no calibrated match "
        "probability); set filter.score: similarity (and similarity.model: itc for its own cosine) to filter by "
        "its cosine"
    )


def checked_family(role: str, name: str, config: dict) -> Family:
    """The family of checkpoint ``name`` when it serves ``role``; else ``ModelRoleError`` saying why."""
    problem = role_problem(role, name, config)
    if problem:
        raise ModelRoleError(problem)
    return identify(config)


def _image_text_to_text(config: dict) -> bool:
    """Whether transformers' own registry of image-text-to-text models (the VLM captioners) lists the checkpoint's
    class (its model type when it names none): a BLIP-2 captioner is listed, BLIP-2's matcher of the same model
    type is not. The registry is a table of names; reading it imports no model code."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as REGISTRY

    architectures = config.get("architectures") or []
    if architectures:
        return architectures[0] in set(REGISTRY.values())
    return config.get("model_type") in REGISTRY


def local_config(name: str) -> dict | None:
    """The ``config.json`` of checkpoint ``name`` without the network: ``embedded:NAME``, a local directory, a
    Beam filesystem URL (read in place) or a hub id in the local Hugging Face cache; None when a hub id is not
    cached (the load, which may download, checks it then)."""
    from .loading import EMBEDDED_PREFIX, resolve_model

    if name.startswith(EMBEDDED_PREFIX):
        return _read_json(Path(resolve_model(name)) / "config.json")
    if "://" in name:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(name.rstrip("/") + "/config.json") as handle:
            return json.loads(handle.read())
    path = Path(name).expanduser()
    if path.is_dir():
        return _read_json(path / "config.json")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    return _read_json(Path(cached)) if isinstance(cached, str) else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load(role: str, name: str, device="auto", dtype="float32", trust_remote_code=False, **options):
    """Checkpoint ``name`` loaded into the wrapper that runs its family in ``role`` (``ModelRoleError`` when it
    cannot serve it); ``options`` are the wrapper's constructor options."""
    import importlib

    from .base import checkpoint_config
    from .loading import resolve_model

    family = checked_family(role, name, checkpoint_config(resolve_model(name), trust_remote_code))
    module, cls = WRAPPERS[role, family.kind].split(":")
    wrapper = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    return wrapper.from_pretrained(name, device, dtype, trust_remote_code, **options)

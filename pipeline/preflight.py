"""Checks made before any work starts. Each failure is a ConfigError naming the key or flag at fault, so the
command line says it in one line and exits 2, instead of a worker failing after Beam has started."""

from __future__ import annotations

import os
import re

from .config import RunConfig
from .errors import ConfigError

# A Hugging Face repo id: "name" or "owner/name" of letters, digits and -_. (the hub's own rule, simplified).
HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")
HUB_TIMEOUT_S = 10.0


def check_models(config: RunConfig) -> None:
    """Every model the run names resolves to a checkpoint, and each can serve its role."""
    from ..models.families import CAPTIONER, FILTER, ROLE_KEYS, SIMILARITY

    roles = [(CAPTIONER, config.captioner.model), (FILTER, config.filter.model)]
    if config.similarity.model not in ("none", "itc"):
        roles.append((SIMILARITY, config.similarity.model))
    for role, name in roles:
        check_model(ROLE_KEYS[role], name)
    for role, name in roles:
        check_role(role, name, config.filter.score)
    check_weights([(role, name) for role, name in roles if _on_disk(name)])
    if config.similarity.embeddings:
        from ..models.similarity import embedding_checkpoint

        check_single_vector(embedding_checkpoint(config.similarity.model, config.filter.model))


def check_single_vector(name: str) -> None:
    """The similarity model's image embedding is one vector, as clip-retrieval's ``img_emb/`` files hold."""
    from ..models import families

    model_config = families.local_config(name)
    family = families.identify(model_config) if model_config else None
    if family is not None and not family.single_vector:
        raise ConfigError(
            f"similarity.embeddings: {name!r} is {families.described(model_config)}, whose ITC embeds an image as "
            "one vector per query, and the embedding files need one; set similarity.model to a dual encoder "
            "(SigLIP, CLIP, ...) to write embeddings"
        )


def check_role(role: str, name: str, score: str) -> None:
    """Checkpoint ``name`` can serve ``role`` (its ``config.json`` against ``models.families``), and a filter can
    give the ``filter.score`` named ``score``. A hub id not in the local cache is checked as it loads instead:
    this check never reaches the network."""
    from ..models import families

    key = families.ROLE_KEYS[role]
    try:
        model_config = families.local_config(name)
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        raise ConfigError(f"{key}: {name!r} has no readable config.json ({' '.join(str(exc).split())[:200]})") from None
    if model_config is None:
        return
    problem = families.role_problem(role, name, model_config)
    if problem is None and role == families.FILTER:
        problem = families.score_problem(name, model_config, score)
    if problem:
        raise ConfigError(problem)


def _on_disk(name: str) -> bool:
    """A checkpoint in a local directory, whose weights ``check_weights`` can read now. A hub id (its weights may
    not be downloaded yet) or one on a Beam filesystem (the workers copy it down) is checked as it loads; the
    embedded demo checkpoints ship with the package and its tests load them."""
    return "://" not in name and os.path.isdir(os.path.expanduser(name))


def check_weights(checks: list[tuple[str, str]]) -> None:
    """Each ``(role, checkpoint)`` loads with every weight of its role's model and a processor
    (``models.base.check_loadable``), checked in a child process of its own: building a model on the meta
    device here left the run that followed 20% slower (BLIP-base, 32 images: 58 s against 47 s, outputs equal),
    for a cause not found, so the check keeps its state out of the run's process."""
    import subprocess
    import sys

    if not checks:
        return
    command = [sys.executable, "-m", "capfilt.models.loadable", *(item for check in checks for item in check)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 2:
        raise ConfigError(result.stdout.strip().splitlines()[-1])
    if result.returncode != 0:
        raise ConfigError(f"checking the models failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")


def check_model(key: str, name: str) -> None:
    """``name`` resolves to a checkpoint: an embedded one, a directory (local or on a Beam filesystem) holding
    ``config.json``, or a hub id that is in the local cache, or, when online, that the hub knows."""
    from ..models.loading import EMBEDDED_PREFIX, resolve_model

    if name.startswith(EMBEDDED_PREFIX):
        try:
            resolve_model(name)
        except FileNotFoundError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        return
    if "://" in name:
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(name.rstrip("/") + "/config.json"):
            raise ConfigError(f"{key}: {name!r} holds no config.json; is it a model directory?")
        return
    path = os.path.expanduser(name)
    if os.path.exists(path) or os.path.isabs(path) or name.startswith((".", "~")) or not HUB_ID.match(name):
        if not os.path.isdir(path):
            raise ConfigError(f"{key}: {name!r} not found; set it to a local model directory or a hub id")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"{key}: {name!r} is not a model directory (no config.json)")
        return
    _check_hub_model(key, name)


def _check_hub_model(key: str, name: str) -> None:
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.utils import RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(
            f"{key}: {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it first or set it to a local directory"
        )
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise ConfigError(f"{key}: {name!r} not found on the Hugging Face hub (or it is private)") from None
    except Exception as exc:  # no network, DNS, proxy, timeout: all the same to the user
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(
            f"{key}: {name!r} is not in the local cache and the Hugging Face hub did not answer ({reason}); "
            "set it to a local directory"
        ) from None


def check_device(device: str) -> None:
    """A CUDA device named in the config exists in this torch build (checked for runs on this machine only:
    a Dataflow launcher has no GPU of its own)."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"runtime.device: {device!r}, but torch {torch.__version__} sees no CUDA device; use cpu or auto"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"runtime.device: {device!r}, but only {torch.cuda.device_count()} CUDA device(s) exist")


def check_output_not_input(shards: list[str], output_dir: str) -> None:
    """The output folder is neither the input folder nor above any input shard: a run never writes its input."""
    out = _canonical(output_dir)
    for shard in shards:
        folder = _canonical(shard.rstrip("/").rsplit("/", 1)[0])
        if folder == out or folder.startswith(out + "/"):
            raise ConfigError(
                f"--output {output_dir}: holds the input shard {shard}; write the output to a folder of its own"
            )


def _canonical(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.realpath(path)


def check_unique_names(shards: list[str]) -> None:
    from .shard.reader import shard_name

    seen: dict[str, str] = {}
    for path in shards:
        name = shard_name(path)
        if name in seen:
            raise ConfigError(f"--input: {seen[name]} and {path} would both write {name}.tar; rename one")
        seen[name] = path


def check_runner(config: RunConfig, beam_args: list[str]) -> None:
    from apache_beam.options.pipeline_options import StandardOptions

    runners = [a.split("=", 1)[1] for a in [*config.beam_args(), *beam_args] if a.startswith("--runner=")]
    runner = runners[-1] if runners else config.runner
    if "." not in runner and runner not in StandardOptions.KNOWN_RUNNER_NAMES:
        raise ConfigError(
            f"runner {runner!r} is not a Beam runner (known: {', '.join(StandardOptions.KNOWN_RUNNER_NAMES)})"
        )

"""Loading BLIP checkpoints: where a model name points, which device and dtype, and the safety switches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED_PREFIX = "embedded:"
DTYPES = ("float32", "bfloat16", "float16")


def resolve_model(name: str) -> str:
    """A local directory or hub id for ``name``.

    ``embedded:NAME`` is a checkpoint shipped inside the package (``models/embedded/NAME``); a directory on a
    Beam filesystem (``gs://``, ``s3://``) is copied once into a local cache; anything else goes to
    ``from_pretrained`` as it is (a local directory or a Hugging Face hub id).
    """
    if name.startswith(EMBEDDED_PREFIX):
        path = EMBEDDED_DIR / name[len(EMBEDDED_PREFIX) :]
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no embedded model {name!r} at {path}")
        return str(path)
    if "://" in name:
        return _copy_remote_dir(name)
    return name


def _copy_remote_dir(url: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    root = url.rstrip("/")
    cache = Path(tempfile.gettempdir()) / "capfilt-models" / root.replace("://", "/").replace("/", "_")
    if (cache / ".complete").exists():
        return str(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache.parent))  # same disk, so the rename is atomic
    for meta in FileSystems.match([root + "/**"])[0].metadata_list:
        relative = meta.path[len(root) + 1 :]
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(meta.path) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
    (staging / ".complete").touch()
    try:
        os.replace(staging, cache)
    except OSError:  # another process finished first; its copy is as good as ours
        pass
    return str(cache)


def pick_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_blip(
    model_class,
    name: str,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    processor_class=None,
):
    """Load ``model_class`` and its processor (``BlipProcessor`` unless ``processor_class`` is given, e.g.
    ``CLIPProcessor``) from ``name``, in eval mode on the chosen device.

    Weights come only from safetensors files; nothing is downloaded when ``name`` is a local directory.
    Returns ``(model, processor, device)``.
    """
    import torch
    from transformers import BlipProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(name)
    local = Path(path).is_dir()
    kwargs = dict(use_safetensors=True, trust_remote_code=trust_remote_code, local_files_only=local)
    model = model_class.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    processor_class = processor_class or BlipProcessor
    processor = processor_class.from_pretrained(path, local_files_only=local, trust_remote_code=trust_remote_code)
    device = pick_device(device)
    return model.to(device).eval(), processor, device

"""Where a model name points, which device it runs on and in which dtype; ``base.PretrainedModel.load`` loads it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED_PREFIX = "embedded:"
DTYPES = ("float32", "bfloat16", "float16")
AUTO_DTYPE = "auto"
# x86 flags of native bfloat16 arithmetic (AVX512-BF16 dot products, AMX tiles); without them torch emulates
# bfloat16 on the CPU, which is slower than float32.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively: on CUDA what torch reports for the GPU; on a CPU, the
    ``avx512_bf16`` or ``amx_bf16`` instructions, as torch's own CPU probe (cpuinfo) sees them, or as
    ``/proc/cpuinfo`` lists them where that probe is missing."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probe is not None for probe in probes):
        return any(probe() for probe in probes)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is bfloat16 where ``device`` (``auto``, ``cpu`` or ``cuda[:N]``) has native bfloat16, else
    float32; any other dtype stays as it is."""
    if dtype != AUTO_DTYPE:
        return dtype
    return "bfloat16" if native_bfloat16(pick_device(device)) else "float32"

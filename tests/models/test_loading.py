"""Which dtype ``auto`` means: bfloat16 only where the device computes in it natively."""

import pytest
import torch

from capfilt.models import loading


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected", [(True, False, True), (False, True, True), (False, False, False)]
)
def test_cpu_bfloat16_follows_torchs_probe_of_the_instructions(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert loading.native_bfloat16("cpu") is expected
    assert loading.resolve_dtype("auto", "cpu") == ("bfloat16" if expected else "float32")


@pytest.mark.parametrize("flags, expected", [("fpu sse avx512f avx512_bf16", True), ("fpu sse avx2 avx512f", False)])
def test_without_torchs_probe_the_cpu_flags_decide(monkeypatch, tmp_path, flags, expected):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    real_path = loading.Path
    monkeypatch.setattr(loading, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert loading.native_bfloat16("cpu") is expected


def test_cuda_asks_torch_about_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert loading.resolve_dtype("auto", "cuda:0") == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert loading.resolve_dtype("auto", "cuda") == "bfloat16"


def test_explicit_dtypes_pass_through():
    assert [loading.resolve_dtype(d, "cpu") for d in loading.DTYPES] == list(loading.DTYPES)

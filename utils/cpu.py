"""What the CPU at hand offers: its model name, the vector features that decide speed, and whether bfloat16
has native support (the `--amp` decision and the benchmarks' headers read it from here)."""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

# /proc/cpuinfo flags that change torch's CPU speed (AVX2 vs AVX-512 kernels; bfloat16 dot products; AMX tiles)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ('', {}) where there is none (macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.processor(), flags


def cpu_model() -> str:
    return _cpuinfo()[0] or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def torch_cpu_capability() -> str:
    """The kernel set torch dispatches to here ('AVX512', 'AVX2', 'DEFAULT', ...)."""
    return torch.backends.cpu.get_cpu_capability()


def native_cpu_bfloat16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX): only then is bfloat16 autocast
    faster than float32 here; without it torch emulates bfloat16 and autocast is several times slower."""
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)
    return "AMX" in torch_cpu_capability() or "BF16" in torch_cpu_capability()


def cpu_description() -> str:
    """One line: model, the speed-relevant flags present, torch's kernel set."""
    present = [flag for flag in SPEED_FLAGS if flag in cpu_flags()] or ["no AVX2/AVX-512 flags"]
    return f"{cpu_model()}; features {' '.join(present)}; torch kernels {torch_cpu_capability()}"

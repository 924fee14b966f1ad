"""The project's one home for devices: the default, the resolution of `--device`, and AMP autocast (what it
casts to on the machine at hand)."""
from __future__ import annotations

import contextlib

import torch

from utils.cpu import cpu_model, native_cpu_bfloat16
from utils.logging import get_logger


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The requested device (None: CUDA when available, else CPU); CUDA requested on a machine without it
    falls back to CPU with a clear message. The one device resolution of the project (CLIP loading uses it too)."""
    try:
        device = torch.device(default_device() if name is None else name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name}: not a torch device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        get_logger().warning(f"--device {name} requested but CUDA is not available here: running on cpu")
        return torch.device("cpu")
    return device


_warned_no_bfloat16 = []


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """What `--amp` autocasts to on `device`: float16 on CUDA, bfloat16 on a CPU with native bfloat16
    (AVX512-BF16 or AMX); None (float32, with one warning per process) on a CPU without it, where emulated
    bfloat16 is several times slower than float32."""
    if device.type == "cuda":
        return torch.float16
    if device.type != "cpu" or native_cpu_bfloat16():
        return torch.bfloat16
    if not _warned_no_bfloat16:
        _warned_no_bfloat16.append(True)
        get_logger().warning(f"--amp: this CPU ({cpu_model()}) has no native bfloat16 (avx512_bf16/amx_bf16), "
                             "where autocast would be slower than float32: running float32")
    return None


def autocast_context(device: torch.device, enabled: bool):
    """Autocast to `amp_dtype(device)`; a no-op when AMP is off or would not help."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

"""The project's one home for devices: the default, the resolution of `--device`, and AMP autocast."""
from __future__ import annotations

import contextlib

import torch

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


def autocast_context(device: torch.device, enabled: bool):
    """bfloat16 autocast on CPU, float16 on CUDA; a no-op when AMP is off."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)

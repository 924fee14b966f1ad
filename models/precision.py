"""The precision the losses, matching, RoI scoring and post-processing compute in.

Autocast (`--amp`) hands them float16/bfloat16 outputs, which are promoted to float32 as before; a model run
in double precision (`model.double()` with float64 inputs, e.g. the float64 reference fixtures) stays in
float64 end to end.
"""
from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any tensor is float64, else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def at_least_float32(x: Tensor) -> Tensor:
    """float64 stays float64; anything else (half, bfloat16, float32, integers) becomes float32."""
    return x if x.dtype == torch.float64 else x.float()

"""Temporal position encodings (SPEC §5.2) and the sine embedding of reference points (§5.6)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.precision import at_least_float32

TWO_PI = 2 * math.pi


def sine_table(angles: Tensor, num_channels: int, temperature: float = 10000.0) -> Tensor:
    """Interleaved sin/cos features of `angles [...]` -> `[..., num_channels]` (float32, float64 for float64
    angles).

    Channel i uses the wavelength `temperature ** (2 * floor(i / 2) / num_channels)`; even channels take
    the sine, odd ones the cosine. The wavelengths are float32 in any precision, as in the original.
    """
    dim_t = torch.arange(num_channels, dtype=torch.float32, device=angles.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_channels)
    phase = at_least_float32(angles)[..., None] / dim_t
    return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=-1).flatten(-2)


def reference_sine_embedding(reference: Tensor, num_channels: int) -> Tensor:
    """Sine embedding of normalised reference points `r [...]` (angle 2*pi*r) -> `[..., num_channels]`."""
    return sine_table(reference * TWO_PI, num_channels)


class SinePositionEncoding(nn.Module):
    """Parameter-free encoding of the normalised position among the valid snippets of each sample.

    Position t gets the angle `2*pi * n_t / (n_T + 1e-6)`, n_t = number of valid snippets in 1..t (padding
    repeats the last valid value).
    """

    def __init__(self, num_channels: int, temperature: float = 10000.0, eps: float = 1e-6):
        super().__init__()
        self.num_channels = num_channels
        self.temperature = temperature
        self.eps = eps

    # --compile runs this eagerly: inductor's float32 sin/cos differ from ATen's (the original's) by an ulp,
    # which a float64 model would carry to ~1e-8 everywhere; a parameter-free table, costing one graph break
    @torch.compiler.disable
    def forward(self, mask: Tensor) -> Tensor:
        """`mask [B, T]` (True = padding) -> `[B, T, C]` float32 (also for a float64 model: the original
        computes it in float32 and its consumers promote it)."""
        position = (~mask).cumsum(1, dtype=torch.float32)
        position = position / (position[:, -1:] + self.eps) * TWO_PI
        return sine_table(position, self.num_channels, self.temperature)


class LearnedPositionEncoding(nn.Module):
    """`position_embedding learned`: one learned vector per absolute position (up to 1000), mask ignored.

    The attribute name `col_embed` keeps the original's state-dict key `backbone.1.col_embed.weight`.
    """

    def __init__(self, num_channels: int, max_length: int = 1000):
        super().__init__()
        self.col_embed = nn.Embedding(max_length, num_channels)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: Tensor) -> Tensor:
        batch, length = mask.shape
        if length > self.col_embed.num_embeddings:
            raise ValueError(f"learned position encoding covers {self.col_embed.num_embeddings} positions, "
                             f"got a sequence of {length}")
        positions = torch.arange(length, device=mask.device)
        return self.col_embed(positions)[None].expand(batch, -1, -1)


def build_position_encoding(kind: str, num_channels: int) -> nn.Module:
    if kind == "sine":
        return SinePositionEncoding(num_channels)
    if kind == "learned":
        return LearnedPositionEncoding(num_channels)
    raise ValueError(f"position_embedding: expected 'sine' or 'learned', got {kind!r}")

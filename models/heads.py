"""Prediction heads: the shared MLP, box decoding, prior-biased linear heads, the salient head.

SPEC §5.7-5.8.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

PRIOR_PROBABILITY = 0.01


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """`log(x / (1 - x))` with x clamped to [0, 1] and both terms to >= eps."""
    x = x.clamp(min=0, max=1)
    return (x.clamp(min=eps) / (1 - x).clamp(min=eps)).log()


def build_box_head(hidden_dim: int) -> MLP:
    """3-layer MLP -> 2 offsets (center, width); the last layer starts at zero (center = reference,
    width 0.5)."""
    head = MLP(hidden_dim, hidden_dim, 2, 3)
    nn.init.zeros_(head.layers[-1].weight)
    nn.init.zeros_(head.layers[-1].bias)
    return head


def predict_boxes(box_head: nn.Module, features: Tensor, reference: Tensor) -> Tensor:
    """`features [B, Q, C]`, `reference [Q, 1]` or `[B, Q, 1]` in (0, 1) -> (center, width) `[B, Q, 2]`.

    The reference point enters the center offset in logit space; the width offset is used as is.
    """
    offsets = box_head(features)
    return (offsets + F.pad(inverse_sigmoid(reference), (0, 1))).sigmoid()


def prior_linear(in_features: int, out_features: int) -> nn.Linear:
    """Linear layer whose bias starts at the logit of a 0.01 prior (-4.59512)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.constant_(layer.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
    return layer


class SalientHead(nn.Sequential):
    """Per-snippet actionness of the encoder memory: Conv1d k=3 -> LeakyReLU(0.2) -> Conv1d k=1 -> 1 logit.

    (Indices 0 and 2 are the original's `salient_head.0/2` keys.) Not masked: the logit at Tv-1 of a padded
    sample reads memory row Tv (SPEC §12 quirk 27's neighbour; the original does the same).
    """

    def __init__(self, channels: int, negative_slope: float = 0.2):
        super().__init__(nn.Conv1d(channels, channels, kernel_size=3, padding=1),
                         nn.LeakyReLU(negative_slope),
                         nn.Conv1d(channels, 1, kernel_size=1))

    def forward(self, memory: Tensor) -> Tensor:
        """`[B, T, C]` -> `[B, T, 1]`."""
        return super().forward(memory.transpose(1, 2)).transpose(1, 2)

"""The optional Conv1d "backbone" and its container (SPEC §5.1)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TemporalConvStack(nn.Module):
    """`num_layers` x (Conv1d k=3, zero padding 1 -> LeakyReLU(0.2)); no residual, no norm, no re-masking.

    Padded snippets are not re-masked (as the original): output row Tv-1 of a padded sample reads input
    row Tv.
    """

    def __init__(self, channels: int, num_layers: int = 1, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.layers = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size=3, padding=1)
                                    for _ in range(num_layers))
        for conv in self.layers:
            nn.init.kaiming_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor) -> Tensor:
        """`[B, T, C]` -> `[B, T, C]`."""
        x = features.transpose(1, 2)
        for conv in self.layers:
            x = F.leaky_relu(conv(x), self.negative_slope)
        return x.transpose(1, 2)


class Backbone(nn.ModuleList):
    """Holds the conv stack (index 0) and the position encoding (index 1).

    The index layout reproduces the original's state-dict keys (`backbone.0.layers.0.weight`,
    `backbone.1.col_embed.weight`). The conv stack is always built, so its (possibly untrained) weights are
    always in the checkpoint; GAP applies it only with `enable_backbone` (SPEC §12 quirk 4).
    """

    def __init__(self, conv_stack: TemporalConvStack, position_encoding: nn.Module):
        super().__init__([conv_stack, position_encoding])

    @property
    def conv_stack(self) -> TemporalConvStack:
        return self[0]

    @property
    def position_encoding(self) -> nn.Module:
        return self[1]

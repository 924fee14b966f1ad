"""ActivityNet1.3: one item per video, features resampled to `rescale_length` (SPEC §4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import BaseDataset, Item


def rescale_features(features: torch.Tensor, length: int) -> torch.Tensor:
    """Resample ``[L, C]`` features to ``[length, C]`` with `F.interpolate`'s default mode ("nearest").

    SPEC §12 #29 (KEEP): the original uses nearest, not linear, interpolation; the PyTorch call itself is used
    so that the picked rows are bit-identical (a float64 index formula differs for some lengths).
    """
    return F.interpolate(features.t().unsqueeze(0), size=length).squeeze(0).t().contiguous()


class ActivityNet13Dataset(BaseDataset):
    """Whole videos with at least one valid instance (longer than 1 s) of the mode's classes.

    Targets are normalised by `snippet_duration` and the salient mask is built on the resampled length
    (`rescale_length`, 300 in the headline run; 0 keeps the video's own length). Segments ending after
    `snippet_duration` give normalised values above 1 and are not clipped, as in the original.
    """

    def _build_items(self, cfg) -> list[Item]:
        rescale = int(getattr(cfg, "rescale_length", 0) or 0)
        if rescale < 0:
            raise ValueError(f"rescale_length must be >= 0 (0 = keep each video's length), got {rescale}")
        self.rescale_length = rescale
        return [Item.whole_video(index, video, rescale or video.snippet_length)
                for index, video in enumerate(self.videos) if video.num_instances]

    def _load_item_features(self, item: Item) -> torch.Tensor:
        features = super()._load_item_features(item)
        return rescale_features(features, self.rescale_length) if self.rescale_length else features

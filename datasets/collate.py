"""Batching: pad features to the longest item, mask the padding (SPEC §4.1)."""
from __future__ import annotations

import torch

from .items import ItemInfo


def collate_batch(batch: list[tuple[torch.Tensor, dict, ItemInfo | None]], dtype: torch.dtype = torch.float32,
                  ) -> tuple[torch.Tensor, torch.Tensor, list[dict], list[ItemInfo | None]]:
    """``[(features [T_i, C], target, info), ...]`` -> ``(features [B, T, C] zero-padded (`dtype`; float64 for
    the float64 reference runs), mask [B, T] True = padding, targets list, infos list)``, T = max T_i."""
    if not batch:
        raise ValueError("collate_batch got an empty batch")
    features = [f for f, _, _ in batch]
    dims = {f.shape[1] for f in features}
    if len(dims) != 1:
        raise ValueError(f"items of one batch have different feature dimensions {sorted(dims)}")
    lengths = torch.tensor([f.shape[0] for f in features])
    longest = int(lengths.max())
    padded = features[0].new_zeros((len(features), longest, features[0].shape[1]), dtype=dtype)
    for k, f in enumerate(features):
        padded[k, : f.shape[0]] = f
    mask = torch.arange(longest)[None, :] >= lengths[:, None]
    return padded, mask, [t for _, t, _ in batch], [info for _, _, info in batch]

"""Batch-level views of the per-item target dicts used by the model, matcher and criterion."""
from __future__ import annotations

import torch
from torch import Tensor


def salient_ground_truth(targets: list[dict], length: int, device: torch.device | None = None) -> Tensor:
    """Per-snippet action indicator `[B, length]`: 1 inside any instance of the item (SPEC §5.8); float32
    also for a float64 model, as the original's (models/criterion.py relies on it).

    `salient_mask [n, T_i]` is False inside instance i; items shorter than `length` are padded with 0.
    One reduction per item, then a single pad-and-stack.
    """
    rows = []
    for index, target in enumerate(targets):
        salient_mask = target["salient_mask"]
        if salient_mask.dim() != 2 or salient_mask.shape[1] > length:
            raise ValueError(f"targets[{index}]['salient_mask']: expected [n, T_i] with T_i <= {length}, "
                             f"got {tuple(salient_mask.shape)}")
        inside = (~salient_mask.bool()).any(dim=0) if salient_mask.shape[0] else \
            salient_mask.new_zeros(salient_mask.shape[1], dtype=torch.bool)
        rows.append(inside)
    gt = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=False)
    gt = torch.nn.functional.pad(gt, (0, length - gt.shape[1]))
    return gt.to(device=device if device is not None else gt.device, dtype=torch.float32)


def concatenated_targets(targets: list[dict], device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, list[int]]:
    """All items' `segments [n, 2]` (as `dtype`) and `labels [n]` concatenated, plus the per-item counts."""
    sizes = [len(t["labels"]) for t in targets]
    segments = torch.cat([t["segments"].reshape(-1, 2) for t in targets]).to(dtype)
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]).long()
    if device is not None:
        segments, labels = segments.to(device), labels.to(device)
    return segments, labels, sizes

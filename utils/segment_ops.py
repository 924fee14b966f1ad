"""1-D segment arithmetic: (center, width) <-> (t1, t2) and temporal IoU.

The original calls its matching/loss overlap "giou" but computes the plain 1-D IoU (SPEC §12 quirk 11):
`segment_iou` / `pairwise_segment_iou` are what the matcher and the loss use. The generalised IoU is
provided for completeness and tests only.
"""
from __future__ import annotations

import torch
from torch import Tensor


def cw_to_t1t2(segments: Tensor) -> Tensor:
    """`[..., 2]` (center, width) -> (start, end)."""
    center, width = segments.unbind(-1)
    return torch.stack((center - 0.5 * width, center + 0.5 * width), dim=-1)


def t1t2_to_cw(segments: Tensor) -> Tensor:
    """`[..., 2]` (start, end) -> (center, width)."""
    start, end = segments.unbind(-1)
    return torch.stack(((start + end) / 2, end - start), dim=-1)


def segment_length(segments: Tensor) -> Tensor:
    """Length of (start, end) segments, 0 for reversed ones."""
    return (segments[..., 1] - segments[..., 0]).clamp(min=0)


def _iou_parts(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union of broadcastable (start, end) segments."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = segment_length(a) + segment_length(b) - inter
    return inter, union


def segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise IoU of aligned (start, end) segments `[..., 2]` (no epsilon, as the original)."""
    inter, union = _iou_parts(a, b)
    return inter / union


def pairwise_segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every segment of `a [N, 2]` with every segment of `b [M, 2]` -> `[N, M]`."""
    return segment_iou(a[:, None, :], b[None, :, :])


def generalized_segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise generalised IoU of aligned (start, end) segments: IoU - (hull - union) / hull."""
    inter, union = _iou_parts(a, b)
    hull = (torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])).clamp(min=0)
    return inter / union - (hull - union) / hull


def pairwise_generalized_segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of every pair of `a [N, 2]` and `b [M, 2]` -> `[N, M]`."""
    return generalized_segment_iou(a[:, None, :], b[None, :, :])

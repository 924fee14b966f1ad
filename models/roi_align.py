"""1-D RoI align over snippet features (SPEC §5.11); CLIP-similarity scoring of proposals (§5.10) that
uses it: models/proposal_scorer.py.

`roi_align_1d` calls `torchvision.ops.roi_align(aligned=False, sampling_ratio=-1)` on the features viewed as
a `[B, C, 1, T]` map, as the original does. Along time that operation is a fixed linear interpolation of
feature rows; `roi_align_weights` builds it as a matrix `A [B, Q, S, T]` (RoI features = `A @ features`,
equal to torchvision up to float rounding, see tests/test_roi_align.py). Because pooling is linear, a
projection of the RoI features equals the pooling of the projected features (`(A X) W = A (X W)`), which
the rectifier uses in training to project T rows instead of Q*S rows.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import roi_align

from models.precision import at_least_float32
from utils.segment_ops import cw_to_t1t2


def roi_windows(boxes: Tensor, lengths: Tensor) -> Tensor:
    """Normalised (center, width) `[B, Q, 2]` -> (x1, x2) in snippet units of each sample's valid length,
    clamped to [0, Tv]."""
    boxes = at_least_float32(boxes)
    valid = lengths.to(boxes.dtype)[:, None, None]
    windows = cw_to_t1t2(boxes) * valid
    return torch.minimum(windows.clamp(min=0), valid)


def _sample_points(boxes: Tensor, lengths: Tensor, num_bins: int, length: int) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's sample coordinates of 1-D RoIs: `x [B, Q, S, G]`, `used [B, Q, S, G]` (the first
    g = ceil(W / S) points of a bin that do not lie beyond T) and `grid g [B, Q]`."""
    boxes = boxes.detach()
    device = boxes.device
    windows = roi_windows(boxes, lengths)
    dtype = windows.dtype
    start = windows[..., 0]
    width = (windows[..., 1] - start).clamp(min=1.0)  # aligned=False widens RoIs narrower than one row
    bin_size = width / num_bins
    grid = torch.ceil(width / num_bins)  # sample points per bin (sampling_ratio=-1), >= 1
    max_grid = max(1, math.ceil(max(length, 1) / num_bins))  # W <= T bounds the grid; no host sync

    bins = torch.arange(num_bins, device=device, dtype=dtype)
    points = torch.arange(max_grid, device=device, dtype=dtype)
    # x = x1 + p * bin + (i + 0.5) * bin / g, evaluated in torchvision's order
    x = (start[..., None, None] + bins[:, None] * bin_size[..., None, None]
         + (points + 0.5) * bin_size[..., None, None] / grid[..., None, None])
    # only the first g points of each bin count; a point beyond T reads nothing (x >= x1 >= 0 > -1 always)
    used = (points < grid[..., None, None]) & (x <= length)
    return x, used, grid


def sampling_layout(boxes: Tensor, lengths: Tensor, num_bins: int, length: int) -> tuple[Tensor, Tensor]:
    """The discrete part of the RoI sampling: points per bin `[B, Q]` and which points count `[B, Q, S, G]`.

    RoI-aligned features are continuous in the box while this layout stays the same and jump where it
    changes (a one-ulp change of a float32 box can cross a step); scripts/check_reference.py uses it to
    find the queries whose class logits are well-posed to compare.
    """
    _, used, grid = _sample_points(boxes, lengths, num_bins, length)
    return grid, used


def roi_align_weights(boxes: Tensor, lengths: Tensor, num_bins: int, length: int) -> Tensor:
    """Interpolation matrix of torchvision's RoI align for 1-D RoIs -> `A [B, Q, num_bins, length]` (float32, or
    float64 for float64 boxes).

    `boxes [B, Q, 2]` normalised (center, width), `lengths [B]` valid snippets per sample, `length` = T (the
    padded length). Per bin: `g = ceil(W / S)` sample points, `W = max(x2 - x1, 1)`, each a linear
    interpolation between rows floor(x) and floor(x) + 1 (row T-1 at the end); the bin is their mean.
    Boundaries use T, not Tv (quirk 27): a point in (Tv-1, Tv] of a padded sample reads padding row Tv, and
    a window narrower than one snippet is widened to the right, so a window clamped to [Tv, Tv] reads rows
    Tv and Tv+1; a point beyond T reads nothing (such a bin's weights sum to less than 1).
    Constant with respect to `boxes` (the original detaches the RoIs).
    """
    batch, queries = boxes.shape[:2]
    x, used, grid = _sample_points(boxes, lengths, num_bins, length)
    dtype, device = x.dtype, x.device
    x = x.clamp(min=0)
    low = x.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    frac = torch.where(at_end, torch.zeros_like(x), x - low)
    high = torch.where(at_end, low, low + 1)
    scale = used / grid[..., None, None]  # [B, Q, S, G]
    weights = torch.zeros(batch, queries, num_bins, length, device=device, dtype=dtype)
    weights.scatter_add_(-1, low.long(), (1 - frac) * scale)
    weights.scatter_add_(-1, high.long(), frac * scale)
    return weights


def roi_align_1d(features: Tensor, boxes: Tensor, lengths: Tensor, num_bins: int) -> Tensor:
    """RoI features `[B, Q, S, C]` of `features [B, T, C]` for normalised (center, width) boxes (no gradient
    to the boxes). Calls torchvision's kernel exactly as the original does (bit-identical)."""
    batch, queries = boxes.shape[:2]
    windows = roi_windows(boxes.detach(), lengths).to(features.dtype)
    zeros = windows.new_zeros(batch, queries, 1)
    index = torch.arange(batch, device=boxes.device, dtype=features.dtype)
    index = index[:, None, None].expand(-1, queries, 1)
    rois = torch.cat((index, windows[..., :1], zeros, windows[..., 1:], zeros), dim=-1).flatten(0, 1)
    pooled = roi_align(features.transpose(1, 2).unsqueeze(2), rois, output_size=(1, num_bins),
                       spatial_scale=1.0, sampling_ratio=-1, aligned=False)  # [B*Q, C, 1, S]
    return pooled.view(batch, queries, -1, num_bins).transpose(2, 3)

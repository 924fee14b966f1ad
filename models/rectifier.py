"""Static-Dynamic Rectifying module, the original's "refine decoder" (SPEC §5.9).

Each query (dynamic, from the decoder) attends to the RoI-aligned raw CLIP features of its own pre-refine
segment (static); the queries of a sample then attend to each other. The caller adds the result to the
decoder output (`z' = z + y`, quirk 9).

The RoI features enter only through the cross-attention's keys and values. RoI pooling is linear
(`R = A F`, see models/roi_align.py), so given the matrix form `A` the layer projects the T feature rows
once instead of the Q*S RoI rows and pools attention scores and weights through `A` (`_attend_pooled`):
5x fewer operations at the headline shapes and no `[B, Q, S, C]` tensors -- the same math in a different
float rounding order. Given materialised RoI features it follows the original's order (bit-identical).

Unused inputs of the original (RoI positions, video features/positions, the padding mask) are not
computed (quirk 8: they have no effect).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.transformer import attend, split_heads


@dataclass
class RoISource:
    """RoI features of every query's segment, either materialised (`features [B, Q, S, C]`) or as the
    interpolation matrix `weights [B, Q, S, T]` over `source [B, T, C]` (features = weights @ source)."""

    features: Tensor | None = None
    weights: Tensor | None = None
    source: Tensor | None = None

    def __post_init__(self):
        if (self.features is None) == (self.weights is None or self.source is None):
            raise ValueError("RoISource: give either features, or weights and source")


class RectifyingLayer(nn.Module):
    """One refine layer. `fusion` ca: u = the query's cross-attention over its S RoI bins; mean / max: u = the
    mean / max of the bins (cross_attn_local is still built, as in the original, and gets no gradient).
    `cat_type` sum: w = z + u; concat1: w = [z; u] (2C), output = first C channels of the self-attention;
    concat2: output = proj_head(w) (the self-attention result is unused in the original).
    `drop_sa` returns u whatever the cat type (the original's order of checks: with concat1/2 the 2C
    self-attention and proj_head are built but unused; options/model_anet_concat_dropsa_f64.pt shows it)."""

    FUSIONS = ("ca", "mean", "max")

    def __init__(self, d_model: int, nhead: int, cat_type: str = "sum", drop_sa: bool = False,
                 drop_sa_residual: bool = True, fusion: str = "ca"):
        super().__init__()  # flag values are checked once, by models/build.py's check_supported
        self.fusion = fusion
        self.nhead = nhead
        self.cat_type = cat_type
        self.drop_sa = drop_sa
        self.drop_sa_residual = drop_sa_residual
        self.cross_attn_local = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        fused = d_model if cat_type == "sum" else 2 * d_model
        self.self_attn = nn.MultiheadAttention(fused, nhead, dropout=0.0)
        self.proj_head = nn.Linear(2 * d_model, d_model) if cat_type != "sum" else None

    def local_cross_attention(self, z: Tensor, roi: RoISource) -> Tensor:
        """Each query attends to the S RoI bins of its own segment. `z [B, Q, C]` -> `[B, Q, C]`."""
        mha, h = self.cross_attn_local, self.nhead
        batch, queries, d = z.shape
        q = F.linear(z, mha.in_proj_weight[:d], mha.in_proj_bias[:d])
        kv_weight, kv_bias = mha.in_proj_weight[d:], mha.in_proj_bias[d:]
        if roi.features is None:
            out = self._attend_pooled(q, roi.weights, roi.source, kv_weight, kv_bias)
        else:  # the original's order: project the Q*S RoI rows, one query token against its S bins
            kv = F.linear(roi.features, kv_weight, kv_bias).reshape(batch * queries, -1, 2 * d)
            k, v = kv.chunk(2, dim=-1)
            q = q.reshape(batch * queries, 1, d)
            out = attend(split_heads(q, h), split_heads(k, h), split_heads(v, h))
        return mha.out_proj(out).view(batch, queries, d)

    def _attend_pooled(self, q: Tensor, weights: Tensor, source: Tensor, kv_weight: Tensor, kv_bias: Tensor,
                       ) -> Tensor:
        """The same attention with RoI features `R = weights @ source` never formed.

        Scores: `q . (R_s W_k + b_k) = (weights @ (source W_k) q)_s + q . b_k`; the last term is the same for
        every bin, so the softmax drops it. Output: `sum_s p_s (R_s W_v + b_v) = (p^T weights) @ (source W_v)
        + b_v` since the p_s sum to 1.
        `q [B, Q, C]`, `weights [B, Q, S, T]`, `source [B, T, C]` -> `[B, Q, C]`.
        """
        h = self.nhead
        batch, queries, d = q.shape
        keys, values = F.linear(source, kv_weight).chunk(2, dim=-1)  # [B, T, C] each
        weights = weights.to(keys.dtype)
        q = split_heads(q, h).transpose(1, 2) * (float(d // h) ** -0.5)  # [B, h, Q, C/h]
        # [B, h, Q, T]: q . (source W_k)_t
        per_row = torch.matmul(q, split_heads(keys, h).permute(0, 2, 3, 1))
        scores = torch.matmul(weights, per_row.permute(0, 2, 3, 1))  # [B, Q, S, h]
        pooling = torch.matmul(scores.softmax(dim=2).transpose(2, 3), weights)  # [B, Q, h, T]
        out = torch.matmul(pooling.transpose(1, 2), split_heads(values, h).transpose(1, 2))  # [B, h, Q, C/h]
        return out.transpose(1, 2).reshape(batch, queries, d) + kv_bias[d:].to(out.dtype)

    def self_attention(self, w: Tensor) -> Tensor:
        mha, h = self.self_attn, self.nhead
        q, k, v = F.linear(w, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
        return mha.out_proj(attend(split_heads(q, h), split_heads(k, h), split_heads(v, h)))

    def fuse(self, z: Tensor, roi: RoISource) -> Tensor:
        """u `[B, Q, C]`: what each query takes from its RoI bins."""
        if self.fusion == "ca":
            return self.local_cross_attention(z, roi)
        if self.fusion == "mean" and roi.features is None:  # mean of R = (mean of the weights) @ source
            return torch.matmul(roi.weights.mean(dim=2), roi.source.to(z.dtype))
        features = roi.features if roi.features is not None else torch.matmul(roi.weights, roi.source[:, None])
        return features.mean(dim=2) if self.fusion == "mean" else features.max(dim=2).values

    def forward(self, z: Tensor, roi: RoISource) -> Tensor:
        u = self.fuse(z, roi)
        if self.drop_sa:
            return u
        if self.cat_type == "sum":
            w = z + u
            y = self.self_attention(w)
            return y if self.drop_sa_residual else w + y
        w = torch.cat((z, u), dim=-1)
        if self.cat_type == "concat2":
            return self.proj_head(w)
        return self.self_attention(w)[..., : z.shape[-1]]


class StaticDynamicRectifier(nn.Module):
    """`num_layers` refine layers; every layer reads the original query features, so only the last one
    shapes the output (quirk 10) and only it is evaluated (the others get no gradient either way)."""

    def __init__(self, d_model: int, nhead: int, num_layers: int = 1, cat_type: str = "sum",
                 drop_sa: bool = False, drop_sa_residual: bool = True, fusion: str = "ca"):
        super().__init__()
        self.layers = nn.ModuleList(RectifyingLayer(d_model, nhead, cat_type, drop_sa, drop_sa_residual, fusion)
                                    for _ in range(num_layers))

    def forward(self, z: Tensor, roi: RoISource) -> Tensor:
        """`z [B, Q, C]` decoder output, `roi` the (constant) RoI features of the pre-refine segments on
        the raw CLIP features -> the correction `y [B, Q, C]`."""
        return self.layers[-1](z, roi)

"""1-D DETR encoder and Conditional-DETR decoder (SPEC §5.5, §5.6).

Layout inside is batch-first (`[B, L, C]`); the math and the order of float operations are the original's
time-first code. The decoder's positional-query projections, which do not depend on the batch item, are
computed once for `[Q, C]` and broadcast.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.heads import MLP
from models.position_encoding import reference_sine_embedding

# On CPU torch draws random numbers one at a time from its Mersenne Twister, ~8 ns each: with dropout 0.1 the
# headline model's ~33M masked values per iteration cost ~15% of a training step. The CPU mask is therefore cut
# from the raw 64-bit words of numpy's SFC64 generator, four 16-bit values each (~1 ns per value), seeded from
# torch's default generator, so that torch.manual_seed and the saved RNG state still decide every mask.
_MASK_LEVELS = 1 << 16


def _keep_mask_cpu(shape: torch.Size, kept_levels: int) -> Tensor:
    """Bool mask, each value True with probability `kept_levels / 2**16`, independently."""
    seed = int(torch.randint(0, 2 ** 62, (1,)))  # one draw of torch's default generator per mask
    count = shape.numel()
    words = np.random.SFC64(seed).random_raw(-(-count // 4))  # uint64 words: four int16 values each
    values = torch.from_numpy(words.view(np.int16)[:count]).view(shape)  # uniform on -2**15 .. 2**15 - 1
    return values >= _MASK_LEVELS // 2 - kept_levels  # the top `kept_levels` of the 2**16 values


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout, as `F.dropout`: keep each value with probability 1 - p and scale by 1 / (1 - p).

    On CPU the keep probability is 1 - p rounded to a multiple of 2**-16 (p = 0.1 keeps 0.899994) and the
    scale is its exact inverse, so the expectation of the output is still exactly x. On accelerators the mask
    comes from `torch.rand`.
    """
    if not training or p == 0.0:
        return x
    if x.device.type == "cpu":
        kept_levels = round((1.0 - p) * _MASK_LEVELS)
        keep_probability = kept_levels / _MASK_LEVELS
        keep = _keep_mask_cpu(x.shape, kept_levels) if kept_levels else None
    else:
        keep_probability = 1.0 - p
        keep = torch.rand(x.shape, device=x.device).ge_(p) if p < 1.0 else None
    if keep is None:  # everything dropped
        return torch.zeros_like(x)
    return x * keep.to(x.dtype).mul_(1.0 / keep_probability)  # 0 or 1 / keep_probability


class Dropout(nn.Dropout):
    """`nn.Dropout` computed with `dropout` above."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def attend(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None,
           dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention on split heads.

    `q [B, Lq, h, dq]`, `k [B, Lk, h, dq]`, `v [B, Lk, h, dv]` -> `[B, Lq, h * dv]`; scale `dq ** -0.5`;
    `key_padding_mask [B, Lk]` True = ignored key; `dropout_p` drops attention weights.
    Written out (scale q, q k^T, mask, softmax, dropout, weights v) in the order of the original's
    attention modules, so that the float32 results match them bit for bit on the same kernels.
    """
    batch, length, _, head_dim = q.shape
    q = q.transpose(1, 2) * (float(head_dim) ** -0.5)
    # k^T as a transposed view of a [B, h, Lk, dq] block copy: the product reads it transposed, where
    # k.permute(0, 2, 3, 1) would need a slow element-by-element transposing copy
    weights = torch.matmul(q, k.transpose(1, 2).contiguous().transpose(-1, -2))
    if key_padding_mask is not None:
        weights.masked_fill_(key_padding_mask[:, None, None, :], float("-inf"))
    weights = weights.softmax(dim=-1)
    weights = dropout(weights, dropout_p)
    out = torch.matmul(weights, v.transpose(1, 2))
    return out.transpose(1, 2).reshape(batch, length, -1)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """`[B, L, C]` -> `[B, L, h, C / h]` (head j = channels j*C/h .. (j+1)*C/h, as the original)."""
    return x.unflatten(-1, (num_heads, x.shape[-1] // num_heads))


class ProjectionFreeAttention(nn.Module):
    """Multi-head attention without input projections (Conditional DETR): only `out_proj` has parameters.

    Query/key width and value width may differ (the decoder's cross-attention uses 2C for queries/keys and C
    for values). The caller passes already split heads.
    """

    def __init__(self, value_dim: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.out_proj = nn.Linear(value_dim, value_dim)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        out = attend(q, k, v, key_padding_mask, self.dropout if self.training else 0.0)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-norm DETR encoder layer: self-attention with q = k = src + pos, v = src; then an FFN."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.nhead = nhead
        # nn.MultiheadAttention only as the holder of in_proj/out_proj (state-dict keys of the original);
        # the attention itself runs through `attend` with one fused matrix product for q and k.
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor) -> Tensor:
        d = src.shape[-1]
        weight, bias = self.self_attn.in_proj_weight, self.self_attn.in_proj_bias
        q, k = F.linear(src + pos, weight[: 2 * d], bias[: 2 * d]).chunk(2, dim=-1)
        v = F.linear(src, weight[2 * d:], bias[2 * d:])
        dropout = self.self_attn.dropout if self.training else 0.0
        attn = attend(split_heads(q, self.nhead), split_heads(k, self.nhead), split_heads(v, self.nhead),
                      key_padding_mask, dropout)
        src = self.norm1(src + self.dropout1(self.self_attn.out_proj(attn)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_feedforward, dropout)
                                    for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor) -> Tensor:
        """`src, pos [B, T, C]` -> every layer's output stacked `[L_enc, B, T, C]`."""
        outputs = []
        for layer in self.layers:
            src = layer(src, pos, key_padding_mask)
            outputs.append(src)
        return torch.stack(outputs)


class ConditionalDecoderLayer(nn.Module):
    """Conditional-DETR decoder layer (post-norm), SPEC §5.6.

    Only the first layer adds the positional query to the cross-attention query (`ca_qpos_proj`) and the
    positional key to the key (so it appears twice there: added and concatenated, quirk 6); later layers
    have no `ca_qpos_proj` parameters.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, is_first: bool):
        super().__init__()
        self.nhead = nhead
        self.is_first = is_first
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)
        self.sa_v_proj = nn.Linear(d_model, d_model)
        self.self_attn = ProjectionFreeAttention(d_model, dropout)

        self.ca_qcontent_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_proj = nn.Linear(d_model, d_model) if is_first else None
        self.ca_kcontent_proj = nn.Linear(d_model, d_model)
        self.ca_kpos_proj = nn.Linear(d_model, d_model)
        self.ca_v_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_sine_proj = nn.Linear(d_model, d_model)
        self.cross_attn = ProjectionFreeAttention(d_model, dropout)

        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor, pos: Tensor, query_pos: Tensor,
                query_sine: Tensor) -> Tensor:
        """`tgt [B, Q, C]`, `memory, pos [B, T, C]`, `memory_mask [B, T]`, `query_pos [Q, C]` (shared by the
        batch), `query_sine [Q, C]` or `[B, Q, C]` -> `[B, Q, C]`."""
        h = self.nhead
        # self-attention among the queries
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        attn = self.self_attn(split_heads(q, h), split_heads(k, h), split_heads(self.sa_v_proj(tgt), h))
        tgt = self.norm1(tgt + self.dropout1(attn))

        # cross-attention: per head, [content ; positional] queries against [content ; positional] keys
        q = self.ca_qcontent_proj(tgt)
        k = self.ca_kcontent_proj(memory)
        v = self.ca_v_proj(memory)
        k_pos = self.ca_kpos_proj(pos)
        if self.is_first:
            q = q + self.ca_qpos_proj(query_pos)
            k = k + k_pos
        sine = split_heads(self.ca_qpos_sine_proj(query_sine), h).expand(q.shape[0], -1, -1, -1)
        q = torch.cat((split_heads(q, h), sine), dim=-1)
        k = torch.cat((split_heads(k, h), split_heads(k_pos, h)), dim=-1)
        attn = self.cross_attn(q, k, split_heads(v, h), memory_mask)
        tgt = self.norm2(tgt + self.dropout2(attn))

        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class ConditionalDecoder(nn.Module):
    """Stack of conditional decoder layers with one reference point per query (not refined across layers)."""

    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
                 position_prior: bool = False):
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(ConditionalDecoderLayer(d_model, nhead, dim_feedforward, dropout, i == 0)
                                    for i in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.query_scale = MLP(d_model, d_model, d_model, 2)
        # --enable_posPrior: the learned queries are the reference points; this head maps their sine
        # embedding to the positional query (C -> C); otherwise it maps the positional query to the point.
        self.ref_point_head = MLP(d_model, d_model, d_model if position_prior else 1, 2)

    def reference_points(self, query_pos: Tensor, layout_batch: int | None = None) -> Tensor:
        """`sigmoid(ref_point_head(query_pos))`: `[Q, C]` -> `[Q, 1]`, the same for every batch item.

        With `layout_batch = B` the head runs, as in the original, on the queries repeated per item in
        time-first layout `[Q, B, C]` and returns `[B, Q, 1]`: the rounding of the 512 -> 1 product depends
        on the row position, so the items' values can differ in the last bit, and this reproduces them bit
        for bit (a 1-ulp change of a reference point moves the RoI windows and, through them, the CLIP class
        logits by ~1e-4).
        """
        if layout_batch is None:
            return self.ref_point_head(query_pos).sigmoid()
        return self.ref_point_head(query_pos[:, None].repeat(1, layout_batch, 1)).sigmoid().transpose(0, 1)

    def forward(self, memory: Tensor, memory_mask: Tensor, pos: Tensor, query_pos: Tensor,
                exact_layout: bool = False, query_is_reference: bool = False) -> tuple[Tensor, Tensor]:
        """`memory, pos [B, T, C]`, `query_pos [Q, C]` (the learned queries, identical for every item) ->
        (`hs [L_dec, B, Q, C]` after the shared norm, `reference` in (0, 1): `[Q, 1]`, or `[B, Q, 1]` with
        `exact_layout` (see `reference_points`)).

        `query_is_reference` (--enable_posPrior): `query_pos [Q, 1]` are the reference points in logit space;
        the positional query becomes `ref_point_head(sine(sigmoid(query_pos)))`.
        """
        if query_is_reference:
            reference = query_pos.sigmoid()
            query_pos = self.ref_point_head(reference_sine_embedding(reference[..., 0], self.d_model))
            if exact_layout:
                reference = reference[None].expand(memory.shape[0], -1, -1)
        else:
            reference = self.reference_points(query_pos, memory.shape[0] if exact_layout else None)
        sine = reference_sine_embedding(reference[..., 0], self.d_model)
        output = memory.new_zeros(memory.shape[0], query_pos.shape[-2], self.d_model)
        hs = []
        for i, layer in enumerate(self.layers):
            query_sine = sine if i == 0 else sine * self.query_scale(output)
            output = layer(output, memory, memory_mask, pos, query_pos, query_sine)
            hs.append(self.norm(output))
        return torch.stack(hs), reference


class Transformer(nn.Module):
    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 position_prior: bool = False):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"hidden_dim {d_model} is not divisible by nheads {nhead}")
        self.encoder = TransformerEncoder(num_encoder_layers, d_model, nhead, dim_feedforward, dropout)
        self.decoder = ConditionalDecoder(num_decoder_layers, d_model, nhead, dim_feedforward, dropout,
                                          position_prior)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, pos: Tensor, query_pos: Tensor, exact_layout: bool = False,
                query_is_reference: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> (`memory [L_enc, B, T, C]`, `hs [L_dec, B, Q, C]`, `reference [Q, 1]` or `[B, Q, 1]`)."""
        memory = self.encoder(src, pos, mask)
        hs, reference = self.decoder(memory[-1], mask, pos, query_pos, exact_layout, query_is_reference)
        return memory, hs, reference

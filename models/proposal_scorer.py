"""Training-free CLIP-similarity class logits of proposals (SPEC §5.10), from 1-D RoI-pooled raw features
(models/roi_align.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.precision import compute_dtype
from models.roi_align import roi_align_1d

# Added to every feature value (padding included) before the classification RoI align, not before the
# rectifier's (SPEC §12 quirk 28).
CLASSIFICATION_FEATURE_OFFSET = 1e-4


class ProposalScorer(nn.Module):
    """Training-free class logits of proposals: RoI-pooled raw CLIP features vs class text embeddings.

    `before_pred` pools the S bins then compares; `after_pred` compares every bin and averages the logits.
    Quirk of the original, kept: `after_pred` takes effect with `average` pooling only; with any other
    pooling it is ignored (pool, then compare), as options/model_thumos_afterpred_max_f64.pt shows.
    `center2` does not use the RoI bins: it reads one feature row per box (see `center_features`).
    With `norm_embed` both sides are L2-normalised (cosine); the scale is `exp(logit_scale)` with
    `exp_logit_scale`, else `logit_scale` itself.
    """

    POOLINGS = ("average", "max", "center1", "center2", "sparse", "slow_fast", "self_attention")

    def __init__(self, num_bins: int = 16, pooling: str = "average", strategy: str = "before_pred",
                 norm_embed: bool = True, exp_logit_scale: bool = True):
        super().__init__()  # flag values are checked once, by models/build.py's check_supported
        if strategy not in ("before_pred", "after_pred"):
            raise ValueError(f"ROIalign_strategy: expected before_pred or after_pred, got {strategy!r}")
        self.num_bins = num_bins
        self.pooling = pooling
        self.strategy = strategy if pooling == "average" else "before_pred"  # the original's quirk, above
        self.norm_embed = norm_embed
        self.exp_logit_scale = exp_logit_scale

    def pool(self, roi: Tensor) -> Tensor:
        """`[B, Q, S, C]` -> `[B, Q, C]`."""
        if self.pooling == "average":
            return roi.mean(dim=2)
        if self.pooling == "max":
            return roi.max(dim=2).values
        if self.pooling == "center1":
            return roi[:, :, self.num_bins // 2]
        if self.pooling == "sparse":
            return roi[:, :, ::4].mean(dim=2)
        if self.pooling == "slow_fast":
            return (roi.mean(dim=2) + roi[:, :, ::4].mean(dim=2)) / 2
        # self_attention: parameter-free softmax(R R^T) R over the bins, then the mean
        attn = torch.matmul(roi, roi.transpose(-1, -2)).softmax(dim=-1)
        return torch.matmul(attn, roi).mean(dim=2)

    @staticmethod
    def center_features(features: Tensor, boxes: Tensor, lengths: Tensor) -> Tensor:
        """`center2`: one feature row per box `[B, Q, C]`, row `trunc(center * L)`.

        Quirk of the original, kept (options/model_anet_center2_f64.pt shows it): L is not the valid length
        Tv but the number of queries minus the item's padded snippets (its code takes the "length" from the
        boxes' shape), so the row is read near the start of the video. Where that index is negative or past
        the end the original crashes; here it is clamped to [0, T - 1].
        """
        queries, padded = boxes.shape[1], features.shape[1] - lengths
        scale = (queries - padded).to(boxes.dtype)[:, None]
        index = (boxes.detach()[..., 0] * scale).long()  # truncation toward zero, as .long()
        index = index.clamp(0, features.shape[1] - 1)
        return features.gather(1, index[..., None].expand(-1, -1, features.shape[-1]))

    def scale(self, logit_scale: Tensor) -> Tensor:
        """The similarity multiplier: `exp(logit_scale)` with `exp_logit_scale`, else `logit_scale`."""
        return logit_scale.exp() if self.exp_logit_scale else logit_scale

    def similarity(self, visual: Tensor, text: Tensor, scale: Tensor) -> Tensor:
        if self.norm_embed:
            visual = F.normalize(visual, dim=-1, eps=0.0)
            text = F.normalize(text, dim=-1, eps=0.0)
        return scale * torch.matmul(visual, text.t())

    def forward(self, features: Tensor, boxes: Tensor, lengths: Tensor, text_embeddings: Tensor,
                logit_scale: Tensor) -> Tensor:
        """`features [B, T, C]` raw CLIP, `boxes [B, Q, 2]`, `text_embeddings [N, C]` -> `[B, Q, N]`
        (float32; float64 when the features are float64)."""
        if text_embeddings.dim() != 2 or text_embeddings.shape[1] != features.shape[-1]:
            raise ValueError(f"text_embeddings: expected [N, {features.shape[-1]}] (the feature width), got "
                             f"{tuple(text_embeddings.shape)}")
        dtype = compute_dtype(features)
        features = features.to(dtype) + CLASSIFICATION_FEATURE_OFFSET
        scale = self.scale(logit_scale.to(dtype))
        text = text_embeddings.to(dtype)
        if self.pooling == "center2":
            return self.similarity(self.center_features(features, boxes.to(dtype), lengths), text, scale)
        roi = roi_align_1d(features, boxes.to(dtype), lengths, self.num_bins)
        if self.strategy == "after_pred":
            return self.similarity(roi, text, scale).mean(dim=2)
        return self.similarity(self.pool(roi), text, scale)

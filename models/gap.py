"""GAP: the proposal generator assembled from its parts (SPEC §5).

features -> [conv backbone] -> input projection -> encoder (+ salient head) -> conditional decoder
-> [Static-Dynamic Rectifying] -> boxes + actionness -> [CLIP-similarity class logits of the proposals].

Parameter names and registration order follow the original checkpoints (SPEC §10): `logit_scale`,
`backbone`, `transformer`, `bbox_embed`, `refine_decoder`, `query_embed`, `input_proj`, `class_embed`,
`actionness_embed`, `salient_head`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.backbone import Backbone
from models.heads import SalientHead, inverse_sigmoid, predict_boxes
from models.proposal_scorer import ProposalScorer
from models.rectifier import RoISource, StaticDynamicRectifier
from models.roi_align import roi_align_1d, roi_align_weights
from models.text_encoder import DEFAULT_LOGIT_SCALE
from models.transformer import Transformer


class PointwiseConv1d(nn.Conv1d):
    """The original's `input_proj`: Conv1d with kernel 1, taking and returning batch-first `[B, T, C]`.

    Kept a convolution (not the equivalent Linear) because its float32 rounding then matches the original.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class GAP(nn.Module):
    """The detector. `forward` returns a plain dict (see `forward`).

    Eval mode follows the original's order of operations, so float32 outputs are bit-identical to the
    authors' code on the same CPU kernels and thread count (scripts/check_reference.py). This matters
    because the CLIP class logits amplify any rounding difference in the boxes ~1000-fold (RoI windows
    move). Train mode uses two reorderings with the same math that save work: the reference points are
    computed once for `[Q, C]` instead of in the original's per-item layout, and the rectifier projects the
    T feature rows before RoI pooling instead of the Q*S pooled rows (models/rectifier.py).
    """

    def __init__(self, backbone: Backbone, transformer: Transformer, box_head: nn.Module, num_queries: int,
                 hidden_dim: int, actionness_head: nn.Module | None, class_embed: nn.Module | None = None,
                 rectifier: StaticDynamicRectifier | None = None, salient_head: SalientHead | None = None,
                 proposal_scorer: ProposalScorer | None = None, use_backbone: bool = False,
                 roi_bins: int = 16, classifies_by_roi: bool = True, position_prior: bool = False,
                 logit_scale_parameter: bool = True):
        super().__init__()
        # CLIP's similarity scale; a plain (0-dim, float32) parameter here, overwritten by checkpoints or
        # set_logit_scale(). It gets no gradient under the headline flags (SPEC §12 quirk 2). With ViFi-CLIP
        # the original holds a plain tensor read from logit_scale.npy: not a parameter, not in the state_dict.
        scale = torch.tensor(DEFAULT_LOGIT_SCALE, dtype=torch.float32)
        if logit_scale_parameter:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale, persistent=False)
        self.backbone = backbone
        self.transformer = transformer
        self.bbox_embed = box_head
        self.refine_decoder = rectifier
        # --enable_posPrior: one learned reference point per query (logit space, logit(U(0, 1)) init)
        self.query_embed = nn.Embedding(num_queries, 1 if position_prior else hidden_dim)
        if position_prior:
            with torch.no_grad():
                self.query_embed.weight.uniform_(0, 1)
                self.query_embed.weight.copy_(inverse_sigmoid(self.query_embed.weight))
        self.input_proj = PointwiseConv1d(hidden_dim, hidden_dim)
        # Built by the original whenever target_type != none; unused in class-agnostic mode (quirk 5). Without
        # --enable_classAgnostic the class logits are the similarity of class_embed(query) to the text.
        self.class_embed = class_embed
        self.actionness_embed = actionness_head
        self.salient_head = salient_head
        self.proposal_scorer = proposal_scorer
        self.use_backbone = use_backbone
        self.roi_bins = roi_bins
        self.classifies_by_roi = classifies_by_roi
        self.position_prior = position_prior

    @torch.no_grad()
    def set_logit_scale(self, value: float | Tensor) -> None:
        """Set the raw (pre-exp) similarity scale, e.g. the text encoder's CLIP value."""
        self.logit_scale.fill_(float(value))

    def forward(self, features: Tensor, mask: Tensor, text_embeddings: Tensor | None = None,
                return_intermediates: bool = False) -> dict[str, Tensor]:
        """`features [B, T, C]` raw CLIP features (zero-padded), `mask [B, T]` bool True = padding,
        `text_embeddings [N, C]` class embeddings (adds `class_logits`). With the salient head the outputs
        hold `salient_logits` and `salient_loss_mask` (the padding mask they are scored on; the criterion
        builds their target). `return_intermediates` adds the encoder `memory [L_enc, B, T, C]` and decoder
        `hs [L_dec, B, Q, C]` (for the fidelity checks and tests)."""
        if features.dim() != 3 or mask.shape != features.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"expected features [B, T, C] and a bool mask [B, T], got "
                             f"{tuple(features.shape)} and {tuple(mask.shape)} {mask.dtype}")
        length = features.shape[1]
        lengths = length - mask.sum(dim=1)
        pos = self.backbone.position_encoding(mask).to(features.dtype)
        x = self.backbone.conv_stack(features) if self.use_backbone else features
        src = self.input_proj(x)
        memory, hs, reference = self.transformer(src, mask, pos, self.query_embed.weight,
                                                 exact_layout=not self.training,
                                                 query_is_reference=self.position_prior)
        queries = hs[-1]

        if self.refine_decoder is not None:
            with torch.no_grad():  # pre-refine boxes only choose where to pool; never supervised
                boxes = predict_boxes(self.bbox_embed, queries, reference)
                if self.training:
                    roi = RoISource(weights=roi_align_weights(boxes, lengths, self.roi_bins, length),
                                    source=features.detach())
                else:
                    roi = RoISource(features=roi_align_1d(features, boxes, lengths, self.roi_bins))
            queries = queries + self.refine_decoder(queries, roi)

        outputs = {"pred_boxes": predict_boxes(self.bbox_embed, queries, reference)}
        if self.actionness_embed is not None:
            outputs["actionness_logits"] = self.actionness_embed(queries)
        if self.salient_head is not None:
            outputs["salient_logits"] = self.salient_head(memory[-1])
            outputs["salient_loss_mask"] = mask
        if text_embeddings is not None:
            if self.proposal_scorer is None:
                raise ValueError("text_embeddings given but the model has no proposal scorer")
            if self.classifies_by_roi:
                outputs["class_logits"] = self.proposal_scorer(features, outputs["pred_boxes"].detach(), lengths,
                                                               text_embeddings, self.logit_scale)
            else:  # the "DETR + class-agnostic localization head" ablation: trained through loss_ce
                outputs["class_logits"] = self.proposal_scorer.similarity(
                    self.class_embed(queries), text_embeddings.to(queries.dtype),
                    self.proposal_scorer.scale(self.logit_scale.to(queries.dtype)))
        if return_intermediates:
            outputs["memory"] = memory
            outputs["hs"] = hs
        return outputs

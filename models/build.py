"""Configuration -> model, criterion and post-processor.

The modules take explicit values; only this file reads `cfg` (original flag names, SPEC §1.3).

Supported: both headline configurations and, beyond them,
  enable_backbone / backbone_layers k, position_embedding sine|learned, enable_refine on/off,
  refine_layer_num k (only the last layer shapes the output, as the original), refine_cat_type
  sum|concat1|concat2, refine_drop_sa, refine_drop_saResidual, salient_loss on/off, norm_embed,
  exp_logit_scale, ROIalign_size, ROIalign_strategy before_pred|after_pred (after_pred with average
  pooling), pooling_type average|max|center1|sparse|slow_fast|self_attention, prob_type
  softmax|sigmoid|none_mul, proposals_weight_type before_softmax|after_softmax (sigmoid: after only),
  postprocess_type class_agnostic|class_specific|class_one, dropout, widths, depths, heads, queries.
Unsupported (build raises NotImplementedError naming the flag): enable_classAgnostic off (the
  class_embed-similarity detector, its loss_ce and actionness_loss), eval_proposal, target_type none,
  enable_posPrior, refine_fusion_type mean|max, refine_cat_type concat* with refine_drop_sa or without
  refine_drop_saResidual, salient_loss_impl CE, pooling_type center2, pre_norm (the original's decoder
  raises too).
Inert: aux_loss (no auxiliary outputs exist, as in the original); cls_loss_coef (loss_ce is never
  computed in class-agnostic mode, so it is not in the weight dict).
"""
from __future__ import annotations

from argparse import Namespace

from models.backbone import Backbone, TemporalConvStack
from models.criterion import SetCriterion
from models.gap import GAP
from models.heads import SalientHead, build_box_head, prior_linear
from models.matcher import HungarianMatcher
from models.position_encoding import build_position_encoding
from models.postprocess import PostProcess
from models.rectifier import StaticDynamicRectifier
from models.roi_align import ProposalScorer
from models.transformer import Transformer

# The model-, loss- and post-processing-shaping flags of the two headline commands (SPEC §1; README of the
# original). Everything else is at its default.
HEADLINE_MODEL_FLAGS = {
    "thumos14": dict(num_queries=40, enc_layers=2, dec_layers=5, actionness_loss_coef=3.0, norm_embed=True,
                     exp_logit_scale=True, proposals_weight_type="after_softmax", enable_classAgnostic=True,
                     enable_refine=True, refine_drop_saResidual=True, salient_loss=True,
                     salient_loss_coef=3.0,
                     postprocess_type="class_agnostic", postprocess_topk=100),
    "anet": dict(num_queries=30, enc_layers=2, dec_layers=2, enable_backbone=True, actionness_loss_coef=3.0,
                 norm_embed=True, exp_logit_scale=True, proposals_weight_type="after_softmax",
                 enable_classAgnostic=True, enable_refine=True, refine_drop_saResidual=True,
                 salient_loss=True,
                 postprocess_type="class_agnostic", postprocess_topk=100),
}


def _unsupported(flag: str, value, why: str) -> NotImplementedError:
    return NotImplementedError(f"--{flag} {value}: {why}; not implemented (see models/build.py)")


def check_supported(cfg: Namespace) -> None:
    """Raise NotImplementedError naming the first flag whose value this implementation does not provide."""
    if cfg.pre_norm:
        raise _unsupported("pre_norm", True, "the original's conditional decoder has no pre-norm variant")
    if not cfg.enable_classAgnostic:
        raise _unsupported("enable_classAgnostic", False,
                           "only the class-agnostic detector (the paper's; both headline runs) is provided")
    if cfg.eval_proposal:
        raise _unsupported("eval_proposal", True, "class-agnostic proposal evaluation")
    if cfg.target_type == "none":
        raise _unsupported("target_type", "none", "closed-set one-hot classification")
    if cfg.enable_posPrior:
        raise _unsupported("enable_posPrior", True, "the alternative query parametrisation")
    if cfg.enable_refine:
        if cfg.refine_fusion_type != "ca":
            raise _unsupported("refine_fusion_type", cfg.refine_fusion_type,
                               "only cross-attention fusion (ca)")
        if cfg.refine_cat_type != "sum" and (cfg.refine_drop_sa or not cfg.refine_drop_saResidual):
            raise _unsupported("refine_cat_type", cfg.refine_cat_type,
                               "concat variants need --refine_drop_saResidual and no --refine_drop_sa")
        if cfg.refine_layer_num < 1:
            raise ValueError(f"--refine_layer_num must be >= 1, got {cfg.refine_layer_num}")
    if cfg.salient_loss and cfg.salient_loss_impl != "BCE":
        raise _unsupported("salient_loss_impl", cfg.salient_loss_impl, "only the focal 'BCE' salient loss")
    if cfg.pooling_type not in ProposalScorer.POOLINGS:
        raise _unsupported("pooling_type", cfg.pooling_type,
                           f"supported: {', '.join(ProposalScorer.POOLINGS)}")
    if cfg.ROIalign_strategy == "after_pred" and cfg.pooling_type != "average":
        raise _unsupported("ROIalign_strategy", "after_pred", "only with --pooling_type average")
    _check_postprocess(cfg)


def _check_postprocess(cfg: Namespace) -> None:
    if cfg.prob_type == "sigmoid" and cfg.proposals_weight_type != "after_softmax":
        raise _unsupported("proposals_weight_type", cfg.proposals_weight_type, "with --prob_type sigmoid")


def build_model(cfg: Namespace) -> GAP:
    check_supported(cfg)
    width = cfg.hidden_dim
    backbone = Backbone(TemporalConvStack(width, cfg.backbone_layers),
                        build_position_encoding(cfg.position_embedding, width))
    transformer = Transformer(width, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward,
                              cfg.dropout)
    rectifier = None
    if cfg.enable_refine:
        rectifier = StaticDynamicRectifier(width, cfg.nheads, cfg.refine_layer_num, cfg.refine_cat_type,
                                           cfg.refine_drop_sa, cfg.refine_drop_saResidual)
    return GAP(
        backbone=backbone,
        transformer=transformer,
        box_head=build_box_head(width),
        num_queries=cfg.num_queries,
        hidden_dim=width,
        actionness_head=prior_linear(width, 1),
        class_embed=prior_linear(width, width),
        rectifier=rectifier,
        salient_head=SalientHead(width) if cfg.salient_loss else None,
        proposal_scorer=ProposalScorer(cfg.ROIalign_size, cfg.pooling_type, cfg.ROIalign_strategy,
                                       cfg.norm_embed, cfg.exp_logit_scale),
        use_backbone=cfg.enable_backbone,
        roi_bins=cfg.ROIalign_size,
    )


def build_weight_dict(cfg: Namespace) -> dict[str, float]:
    weights = {"loss_bbox": cfg.bbox_loss_coef, "loss_giou": cfg.giou_loss_coef,
               "loss_actionness": cfg.actionness_loss_coef}
    if cfg.salient_loss:
        weights["loss_salient"] = cfg.salient_loss_coef
    return weights


def build_criterion(cfg: Namespace) -> SetCriterion:
    check_supported(cfg)
    matcher = HungarianMatcher(cfg.set_cost_class, cfg.set_cost_bbox, cfg.set_cost_giou)
    return SetCriterion(matcher, build_weight_dict(cfg), cfg.focal_alpha, cfg.gamma, cfg.salient_loss)


def build_postprocessor(cfg: Namespace) -> PostProcess:
    _check_postprocess(cfg)
    return PostProcess(cfg.postprocess_type, cfg.postprocess_topk, cfg.prob_type, cfg.proposals_weight_type)

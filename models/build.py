"""Configuration -> model, criterion and post-processor.

The modules take explicit values; only this file reads `cfg` (original flag names, SPEC §1.3).

Supported (verified against the original's fixtures, see README "Fidelity"): both headline configurations
and, beyond them, enable_backbone / backbone_layers k, position_embedding sine|learned, enable_refine on/off,
refine_layer_num k (only the last layer shapes the output, as the original), refine_fusion_type ca|mean|max,
refine_cat_type sum|concat1|concat2, refine_drop_sa (returns the fusion result u for any cat type, as the
original), refine_drop_saResidual, salient_loss on/off with salient_loss_impl BCE (focal) | CE, norm_embed,
exp_logit_scale, ROIalign_size, ROIalign_strategy before_pred|after_pred (after_pred only acts with average
pooling, as the original), pooling_type average|max|center1|center2|sparse|slow_fast|self_attention,
prob_type softmax|sigmoid|none_mul, proposals_weight_type before_softmax|after_softmax (ignored under
sigmoid, as the original), postprocess_type class_agnostic|class_specific|class_one, eval_proposal,
enable_posPrior, enable_classAgnostic off with actionness_loss (the class_embed-similarity detector with
loss_ce), dropout, widths, depths, heads, queries.
Refused (build raises NotImplementedError naming the flag and why): target_type none (the original crashes
on it), refine_cat_type concat1|concat2 with neither refine_drop_saResidual nor refine_drop_sa (crashes
too), enable_classAgnostic off without actionness_loss or eval_proposal (the original's post-processing
weights the classes by actionness logits that this combination does not produce), pre_norm (the
original's decoder raises too).
Inert: aux_loss (no auxiliary outputs exist, as in the original); cls_loss_coef in class-agnostic mode
(loss_ce is never computed there, so it is not in the weight dict).
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
from models.proposal_scorer import ProposalScorer
from models.rectifier import RectifyingLayer, StaticDynamicRectifier
from models.transformer import Transformer

# The matcher's class cost: actionness in every supported configuration (SPEC §6.2, §11: without
# --enable_classAgnostic, matching still runs on the actionness head).
MATCHER_CLASS_SOURCE = "actionness"


def _unsupported(flag: str, value, why: str) -> NotImplementedError:
    return NotImplementedError(f"--{flag} {value}: {why}; not implemented (see models/build.py)")


def check_supported(cfg: Namespace) -> None:
    """Raise NotImplementedError naming the first flag whose value this implementation does not provide."""
    if cfg.pre_norm:
        raise _unsupported("pre_norm", True, "the original's conditional decoder has no pre-norm variant")
    if cfg.target_type == "none":
        raise _unsupported("target_type", "none", "the original's closed-set one-hot path crashes (its class "
                           "logits and losses do not fit together), so there is no behaviour to reproduce")
    if not _has_actionness(cfg):
        raise _unsupported("enable_classAgnostic", False, "without --actionness_loss (or --eval_proposal) there "
                           "is no actionness head, and the original's scoring of detections needs actionness "
                           "logits; add --actionness_loss (the paper's 'DETR + class-agnostic localization "
                           "head' ablation)")
    if cfg.enable_refine:
        if cfg.refine_fusion_type not in RectifyingLayer.FUSIONS:
            raise ValueError(f"--refine_fusion_type: expected one of {RectifyingLayer.FUSIONS}, got "
                             f"{cfg.refine_fusion_type!r}")
        if cfg.refine_layer_num < 1:
            raise ValueError(f"--refine_layer_num must be >= 1, got {cfg.refine_layer_num}")
        if cfg.refine_cat_type != "sum" and not cfg.refine_drop_sa and not cfg.refine_drop_saResidual:
            raise _unsupported("refine_cat_type", cfg.refine_cat_type, "without --refine_drop_saResidual (or "
                               "--refine_drop_sa) the original's layer returns a 2C-wide feature that cannot "
                               "be added to the decoder output: it crashes")
    if cfg.salient_loss and cfg.salient_loss_impl not in SetCriterion.SALIENT_IMPLS:
        raise ValueError(f"--salient_loss_impl: expected one of {SetCriterion.SALIENT_IMPLS}, got "
                         f"{cfg.salient_loss_impl!r}")
    if cfg.pooling_type not in ProposalScorer.POOLINGS:
        raise _unsupported("pooling_type", cfg.pooling_type,
                           f"supported: {', '.join(ProposalScorer.POOLINGS)}")


def _has_actionness(cfg: Namespace) -> bool:
    """The original builds and trains the actionness head with any of these flags."""
    return cfg.enable_classAgnostic or cfg.actionness_loss or cfg.eval_proposal


def trains_classes(cfg: Namespace) -> bool:
    """loss_ce through class_embed: neither class-agnostic nor proposal mode (the original's criterion)."""
    return not cfg.enable_classAgnostic and not cfg.eval_proposal


def build_model(cfg: Namespace) -> GAP:
    check_supported(cfg)
    width = cfg.hidden_dim
    backbone = Backbone(TemporalConvStack(width, cfg.backbone_layers),
                        build_position_encoding(cfg.position_embedding, width))
    transformer = Transformer(width, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward,
                              cfg.dropout, position_prior=cfg.enable_posPrior)
    rectifier = None
    if cfg.enable_refine:
        rectifier = StaticDynamicRectifier(width, cfg.nheads, cfg.refine_layer_num, cfg.refine_cat_type,
                                           cfg.refine_drop_sa, cfg.refine_drop_saResidual,
                                           cfg.refine_fusion_type)
    return GAP(
        backbone=backbone,
        transformer=transformer,
        box_head=build_box_head(width),
        num_queries=cfg.num_queries,
        hidden_dim=width,
        actionness_head=prior_linear(width, 1) if _has_actionness(cfg) else None,
        class_embed=prior_linear(width, width),
        rectifier=rectifier,
        salient_head=SalientHead(width) if cfg.salient_loss else None,
        proposal_scorer=ProposalScorer(cfg.ROIalign_size, cfg.pooling_type, cfg.ROIalign_strategy,
                                       cfg.norm_embed, cfg.exp_logit_scale),
        use_backbone=cfg.enable_backbone,
        roi_bins=cfg.ROIalign_size,
        classifies_by_roi=cfg.enable_classAgnostic,
        position_prior=cfg.enable_posPrior,
        logit_scale_parameter=cfg.feature_type != "ViFi-CLIP",
    )


def build_weight_dict(cfg: Namespace) -> dict[str, float]:
    weights = {"loss_ce": cfg.cls_loss_coef} if trains_classes(cfg) else {}
    weights.update({"loss_bbox": cfg.bbox_loss_coef, "loss_giou": cfg.giou_loss_coef})
    if _has_actionness(cfg):
        weights["loss_actionness"] = cfg.actionness_loss_coef
    if cfg.salient_loss:
        weights["loss_salient"] = cfg.salient_loss_coef
    return weights


def build_criterion(cfg: Namespace) -> SetCriterion:
    """The losses of `build_model(cfg)` (which checked the flags: call it first)."""
    matcher = HungarianMatcher(cfg.set_cost_class, cfg.set_cost_bbox, cfg.set_cost_giou,
                               class_source=MATCHER_CLASS_SOURCE)
    return SetCriterion(matcher, build_weight_dict(cfg), cfg.focal_alpha, cfg.gamma, cfg.salient_loss,
                        cfg.salient_loss_impl)


def build_postprocessor(cfg: Namespace) -> PostProcess:
    return PostProcess(cfg.postprocess_type, cfg.postprocess_topk, cfg.prob_type, cfg.proposals_weight_type,
                       proposals=cfg.eval_proposal)

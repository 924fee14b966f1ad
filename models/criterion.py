"""Training losses of the class-agnostic detector (SPEC §6.3-6.4).

All losses are computed in float32 from the (possibly mixed-precision) outputs (float64 for a float64
model, models/precision.py) and normalised by
`num_boxes`, the number of ground-truth segments in the batch (under data parallelism the engine sets
`SetCriterion.reduce_num_boxes` to average it over ranks, as DETR does; models/ stays free of it).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss as torchvision_focal_loss

from models.batch_targets import concatenated_targets, salient_ground_truth
from models.matcher import HungarianMatcher
from models.precision import at_least_float32
from utils.segment_ops import cw_to_t1t2, segment_iou


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal BCE: `BCE(x, y) * (1 - p_t) ** gamma * alpha_t` (no alpha_t if alpha < 0).

    torchvision's implementation of the formula the original writes out; the original's reductions follow
    in SetCriterion.
    """
    return torchvision_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")


class SetCriterion(nn.Module):
    """Hungarian-matched box losses, actionness focal loss and the salient (Action-aware Discrimination) loss.

    - `loss_bbox`: L1 of matched (center, width) pairs / num_boxes;
    - `loss_giou`: 1 - plain 1-D IoU of matched pairs, prediction clamped to [0, 1], target not
      (quirks 11-12);
    - `loss_actionness`: focal loss of every query's actionness (target 1 if matched), summed / num_boxes;
    - `loss_salient`: focal loss per snippet against the union of instance spans, zero on padding, mean over
      the padded length T, summed over the batch / num_boxes (quirk 14).
    """

    SALIENT_IMPLS = ("BCE", "CE")

    def __init__(self, matcher: HungarianMatcher, weight_dict: dict[str, float], focal_alpha: float = 0.25,
                 gamma: float = 2.0, salient_loss: bool = False, salient_impl: str = "BCE"):
        super().__init__()  # flag values are checked once, by models/build.py's check_supported
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.focal_alpha = focal_alpha
        self.gamma = gamma
        self.salient_loss = salient_loss
        self.salient_impl = salient_impl
        # num_boxes of this batch -> the normaliser; None: this batch's own count (a single process)
        self.reduce_num_boxes: Callable[[float], float] | None = None

    def forward(self, outputs: dict, targets: list[dict],
                matches: list[tuple[Tensor, Tensor]] | None = None) -> dict[str, Tensor]:
        """-> unweighted losses (float32 scalars). `matches` defaults to the matcher's assignment."""
        if matches is None:
            matches = self.matcher(outputs, targets)
        boxes = at_least_float32(outputs["pred_boxes"])
        device = boxes.device
        tgt_boxes, tgt_labels, sizes = concatenated_targets(targets, device, boxes.dtype)
        num_boxes = float(sum(sizes))
        if num_boxes == 0 and self.reduce_num_boxes is None:
            raise ValueError("criterion: the batch has no ground-truth segment (num_boxes = 0)")
        if self.reduce_num_boxes is not None:
            num_boxes = self.reduce_num_boxes(num_boxes)

        # flat (item, query) and global target indices of the matched pairs
        counts = torch.tensor([len(src) for src, _ in matches])
        offsets = torch.tensor([0] + sizes[:-1], dtype=torch.int64).cumsum(0)
        batch_idx = torch.repeat_interleave(torch.arange(len(matches)), counts).to(device)
        query_idx = torch.cat([src for src, _ in matches]).to(device)
        target_idx = torch.cat([tgt for _, tgt in matches]) + torch.repeat_interleave(offsets, counts)
        target_idx = target_idx.to(device)

        matched = boxes[batch_idx, query_idx]
        matched_tgt = tgt_boxes[target_idx]
        losses = {
            "loss_bbox": F.l1_loss(matched, matched_tgt, reduction="none").sum() / num_boxes,
            "loss_giou": (1 - segment_iou(cw_to_t1t2(matched).clamp(0, 1), cw_to_t1t2(matched_tgt))).sum()
            / num_boxes,
        }

        if "loss_ce" in self.weight_dict:  # no --enable_classAgnostic: classes through class_embed
            semantic = torch.cat([t["semantic_labels"].reshape(-1) for t in targets]).long().to(device)
            losses["loss_ce"] = self._focal_over_queries(outputs["class_logits"], batch_idx, query_idx,
                                                         semantic[target_idx], num_boxes)
        if "actionness_logits" in outputs and "loss_actionness" in self.weight_dict:
            losses["loss_actionness"] = self._focal_over_queries(outputs["actionness_logits"], batch_idx,
                                                                 query_idx, tgt_labels[target_idx], num_boxes)

        if self.salient_loss:
            missing = [key for key in ("salient_logits", "salient_loss_mask") if key not in outputs]
            if missing:
                raise KeyError(f"criterion: outputs lack {missing} (a model without the salient head)")
            salient_logits = at_least_float32(outputs["salient_logits"]).squeeze(-1)
            valid = ~outputs["salient_loss_mask"]
            # float32 in any precision, as the original's: with float64 logits its BCE terms are then float32
            # (binary_cross_entropy_with_logits takes the target's dtype), which the float64 fixtures show
            salient_gt = self.salient_target(outputs, targets)
            if self.salient_impl == "CE":
                losses["loss_salient"] = self._salient_cross_entropy(salient_logits, salient_gt, valid)
            else:
                focal = sigmoid_focal_loss(salient_logits, salient_gt, self.focal_alpha, self.gamma) * valid
                losses["loss_salient"] = focal.mean(1).sum() / num_boxes
        return losses

    @staticmethod
    def salient_target(outputs: dict, targets: list[dict]) -> Tensor:
        """The salient loss's target `[B, T]` (float32): 1 on snippets inside any instance of the item."""
        logits = outputs["salient_logits"]
        return salient_ground_truth(targets, logits.shape[1], logits.device)

    def _focal_over_queries(self, logits: Tensor, batch_idx: Tensor, query_idx: Tensor, labels: Tensor,
                            num_boxes: float) -> Tensor:
        """Focal loss of every query's logits against one-hot targets of the matched queries; the original:
        mean over queries, sum, / num_boxes, times Q (= sum / num_boxes)."""
        logits = at_least_float32(logits)
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, query_idx, labels] = 1.0
        focal = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.gamma)
        return focal.mean(1).sum() / num_boxes * logits.shape[1]

    @staticmethod
    def _salient_cross_entropy(logits: Tensor, salient_gt: Tensor, valid: Tensor) -> Tensor:
        """--salient_loss_impl CE: the action indicator normalised to a distribution over time (+1e-4), cross
        entropy with the log-softmax of the logits over time, on valid snippets, summed over time, mean
        over the batch."""
        target = salient_gt / (salient_gt.sum(dim=1, keepdim=True) + 1e-4)
        log_prob = F.log_softmax(logits, dim=1)
        return -(target * log_prob * valid).sum(dim=1).mean()

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(losses[key] * weight for key, weight in self.weight_dict.items() if key in losses)

"""Training losses of the class-agnostic detector (SPEC §6.3-6.4).

All losses are computed in float32 from the (possibly mixed-precision) outputs and normalised by
`num_boxes`, the number of ground-truth segments in the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.matcher import HungarianMatcher
from models.targets import concatenated_targets
from utils.segment_ops import cw_to_t1t2, segment_iou


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal BCE: `BCE(x, y) * (1 - p_t) ** gamma * alpha_t` (no alpha_t if alpha < 0)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


class SetCriterion(nn.Module):
    """Hungarian-matched box losses, actionness focal loss and the salient (Action-aware Discrimination) loss.

    - `loss_bbox`: L1 of matched (center, width) pairs / num_boxes;
    - `loss_giou`: 1 - plain 1-D IoU of matched pairs, prediction clamped to [0, 1], target not
      (quirks 11-12);
    - `loss_actionness`: focal loss of every query's actionness (target 1 if matched), summed / num_boxes;
    - `loss_salient`: focal loss per snippet against the union of instance spans, zero on padding, mean over
      the padded length T, summed over the batch / num_boxes (quirk 14).
    """

    def __init__(self, matcher: HungarianMatcher, weight_dict: dict[str, float], focal_alpha: float = 0.25,
                 gamma: float = 2.0, salient_loss: bool = False):
        super().__init__()
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.focal_alpha = focal_alpha
        self.gamma = gamma
        self.salient_loss = salient_loss

    def forward(self, outputs: dict, targets: list[dict],
                matches: list[tuple[Tensor, Tensor]] | None = None) -> dict[str, Tensor]:
        """-> unweighted losses (float32 scalars). `matches` defaults to the matcher's assignment."""
        if matches is None:
            matches = self.matcher(outputs, targets)
        boxes = outputs["pred_boxes"].float()
        device = boxes.device
        tgt_boxes, tgt_labels, sizes = concatenated_targets(targets, device)
        num_boxes = float(sum(sizes))
        if num_boxes == 0:
            raise ValueError("criterion: the batch has no ground-truth segment (num_boxes = 0)")

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

        logits = outputs["actionness_logits"].float()
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, query_idx, tgt_labels[target_idx]] = 1.0
        focal = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.gamma)
        # the original: mean over queries, sum, / num_boxes, times Q  (= sum / num_boxes)
        losses["loss_actionness"] = focal.mean(1).sum() / num_boxes * logits.shape[1]

        if self.salient_loss:
            missing = [key for key in ("salient_gt", "salient_loss_mask") if key not in outputs]
            if missing:
                raise KeyError(f"criterion: outputs lack {missing} (call the model with targets=...)")
            salient_logits = outputs["salient_logits"].float().squeeze(-1)
            valid = ~outputs["salient_loss_mask"]
            focal = sigmoid_focal_loss(salient_logits, outputs["salient_gt"].float(), self.focal_alpha,
                                       self.gamma) * valid
            losses["loss_salient"] = focal.mean(1).sum() / num_boxes
        return losses

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(losses[key] * weight for key, weight in self.weight_dict.items() if key in losses)

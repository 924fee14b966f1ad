"""Hungarian matching of queries to ground-truth segments (SPEC §6.2)."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from models.batch_targets import concatenated_targets
from models.precision import at_least_float32
from utils.segment_ops import cw_to_t1t2, pairwise_segment_iou

# The original hard-codes the focal parameters of the class cost (independent of --focal_alpha/--gamma).
MATCHER_FOCAL_ALPHA = 0.25
MATCHER_FOCAL_GAMMA = 2.0


def focal_class_cost(logits: Tensor, alpha: float = MATCHER_FOCAL_ALPHA, gamma: float = MATCHER_FOCAL_GAMMA,
                     ) -> Tensor:
    """Per-logit focal matching cost (positive minus negative term) of `logits [N, K]` -> `[N, K]`."""
    prob = logits.sigmoid()
    negative = (1 - alpha) * (prob ** gamma) * (-(1 - prob + 1e-8).log())
    positive = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return positive - negative


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising `w_bbox * L1 + w_class * focal + w_iou * (-IoU)` per item.

    The overlap term is the plain 1-D IoU of both segments clamped to [0, 1] (the original calls it giou).
    Costs are computed for the whole batch in one pass; the assignment runs on CPU with scipy.
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 class_source: str = "actionness"):
        super().__init__()
        if class_source not in ("actionness", "class_logits"):
            raise ValueError(f"matcher class_source: expected actionness or class_logits, got {class_source!r}")
        self.class_source = class_source
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("matcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    def cost_matrix(self, outputs: dict, targets: list[dict]) -> tuple[Tensor, list[int]]:
        """-> cost `[B, Q, sum n_b]` (float32, float64 for float64 outputs; on the outputs' device) and the
        per-item target counts."""
        boxes = at_least_float32(outputs["pred_boxes"].detach())
        batch, queries = boxes.shape[:2]
        tgt_boxes, tgt_labels, sizes = concatenated_targets(targets, boxes.device, boxes.dtype)
        if self.class_source == "class_logits":  # class costs of the targets' semantic classes
            logits = at_least_float32(outputs["class_logits"].detach())
            tgt_labels = torch.cat([t["semantic_labels"].reshape(-1) for t in targets]).long().to(boxes.device)
        else:
            logits = at_least_float32(outputs["actionness_logits"].detach())
        logits, boxes = logits.flatten(0, 1), boxes.flatten(0, 1)
        cost_class = focal_class_cost(logits)[:, tgt_labels]
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        cost_iou = -pairwise_segment_iou(cw_to_t1t2(boxes).clamp(0, 1), cw_to_t1t2(tgt_boxes).clamp(0, 1))
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_iou
        return cost.view(batch, queries, -1), sizes

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """-> per item (query indices ascending, target indices), int64 on CPU; min(Q, n_b) pairs each."""
        cost, sizes = self.cost_matrix(outputs, targets)
        cost = cost.cpu()
        matches = []
        for item, block in enumerate(cost.split(sizes, dim=-1)):
            rows, cols = linear_sum_assignment(block[item].numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return matches


"""Detections from model outputs (SPEC §7): class probabilities weighted by actionness, top-k, seconds."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.precision import at_least_float32
from utils.segment_ops import cw_to_t1t2


def class_probabilities(class_logits: Tensor, actionness_logits: Tensor, prob_type: str = "softmax",
                        weight_type: str = "after_softmax") -> Tensor:
    """`[B, Q, N]` class logits and `[B, Q, 1]` actionness logits -> `[B, Q, N]` scores.

    softmax + after_softmax (headline): sigmoid(a) * softmax(logits); softmax + before_softmax:
    softmax(sigmoid(a) * logits); sigmoid: sigmoid(a) * sigmoid(logits) whatever the weight type (the
    original ignores before_softmax there; options/model_thumos_sigmoid_before_f64.pt shows it);
    none_mul: softmax(logits).
    """
    actionness = actionness_logits.sigmoid()
    if prob_type == "none_mul":
        return class_logits.softmax(dim=-1)
    if prob_type == "sigmoid":
        return actionness * class_logits.sigmoid()
    if prob_type != "softmax":
        raise ValueError(f"prob_type: expected softmax, sigmoid or none_mul, got {prob_type!r}")
    if weight_type == "after_softmax":
        return actionness * class_logits.softmax(dim=-1)
    if weight_type == "before_softmax":
        return (actionness * class_logits).softmax(dim=-1)
    raise ValueError(f"proposals_weight_type: expected before_softmax or after_softmax, got {weight_type!r}")


class PostProcess(nn.Module):
    """Turn `pred_boxes`, `actionness_logits`, `class_logits` into per-item detections.

    - class_agnostic (headline): top-k over all (query, class) pairs, k = min(topk, Q*N), sorted by score;
      the same query box usually appears under several labels (quirk 25);
    - class_specific: the top-k classes of every query (k = min(topk, N)), query-major order;
    - class_one: every query gets the class with the highest mean score over the queries.
    Segments are (start, end) clamped to [0, 1] and multiplied by the item's duration (seconds from the
    item start).
    `proposals` (--eval_proposal): class-agnostic proposals, one "class" scored sigmoid(actionness); with
    class_agnostic that is the top min(topk, Q) queries by actionness, all labelled 0.
    """

    KINDS = ("class_agnostic", "class_specific", "class_one")

    def __init__(self, kind: str = "class_agnostic", topk: int = 100, prob_type: str = "softmax",
                 weight_type: str = "after_softmax", proposals: bool = False):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"postprocess_type: expected one of {self.KINDS}, got {kind!r}")
        if topk < 1:
            raise ValueError(f"postprocess_topk must be >= 1, got {topk}")
        self.kind = kind
        self.topk = topk
        self.prob_type = prob_type
        self.weight_type = weight_type
        self.proposals = proposals

    @torch.no_grad()
    def forward(self, outputs: dict, video_durations: Tensor) -> list[dict[str, Tensor]]:
        if self.proposals:
            prob = at_least_float32(outputs["actionness_logits"]).sigmoid()
        elif "class_logits" not in outputs:
            raise KeyError("postprocess needs outputs['class_logits']: call the model with text_embeddings")
        else:
            prob = class_probabilities(at_least_float32(outputs["class_logits"]),
                                       at_least_float32(outputs["actionness_logits"]),
                                       self.prob_type, self.weight_type)
        batch, queries, classes = prob.shape
        durations = torch.as_tensor(video_durations, dtype=prob.dtype, device=prob.device).reshape(batch)
        segments = cw_to_t1t2(outputs["pred_boxes"].to(prob.dtype)).clamp(0, 1) * durations[:, None, None]

        if self.kind == "class_agnostic":
            scores, index = prob.flatten(1).topk(min(self.topk, queries * classes), dim=1)
            query_ids, labels = index // classes, index % classes
        elif self.kind == "class_specific":
            scores, labels = prob.topk(min(self.topk, classes), dim=2)
            query_ids = torch.arange(queries, device=prob.device)[None, :, None].expand_as(labels)
            scores, labels, query_ids = scores.flatten(1), labels.flatten(1), query_ids.flatten(1)
        else:
            best = prob.mean(dim=1).argmax(dim=1)  # [B]
            labels = best[:, None].expand(batch, queries)
            scores = prob.gather(2, labels[..., None]).squeeze(-1)
            query_ids = torch.arange(queries, device=prob.device).expand(batch, queries)
        boxes = segments.gather(1, query_ids[..., None].expand(-1, -1, 2))
        return [{"scores": scores[b], "labels": labels[b], "segments": boxes[b], "query_ids": query_ids[b]}
                for b in range(batch)]

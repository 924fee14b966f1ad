import math

import pytest
import torch

from models.batch_targets import salient_ground_truth
from models.build import build_criterion, build_model
from models.criterion import sigmoid_focal_loss
from utils.config import default_config

TINY = dict(hidden_dim=16, nheads=2, dim_feedforward=32, enc_layers=1, dec_layers=2, num_queries=5,
            dropout=0.0,
            enable_classAgnostic=True, enable_refine=True, refine_drop_saResidual=True, salient_loss=True,
            norm_embed=True, exp_logit_scale=True, actionness_loss_coef=3.0, salient_loss_coef=3.0)


def make_targets(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for length in lengths:
        n = int(torch.randint(1, 3, (1,), generator=gen))
        start = torch.randint(0, length - 3, (n,), generator=gen)
        end = start + torch.randint(1, 3, (n,), generator=gen)
        steps = torch.arange(length)
        salient_mask = ~((steps[None] >= start[:, None]) & (steps[None] <= end[:, None]))
        segments = torch.stack(((start + end).float() / 2 / length, (end - start).float() / length), 1)
        targets.append({"segments": segments, "labels": torch.zeros(n, dtype=torch.int64),
                        "salient_mask": salient_mask})
    return targets


def make_batch(lengths, channels=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = max(lengths)
    mask = torch.arange(length)[None] >= torch.tensor(lengths)[:, None]
    features = torch.randn(len(lengths), length, channels, generator=gen).masked_fill(mask[..., None], 0)
    return features, mask, make_targets(lengths, seed)


def focal(x, y, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-x))
    ce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    return (alpha * y + (1 - alpha) * (1 - y)) * ce * (1 - p_t) ** gamma


def test_focal_loss_elementwise():
    x = torch.tensor([-2.0, 0.3, 4.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    expected = [focal(a, b) for a, b in zip(x.tolist(), y.tolist())]
    assert sigmoid_focal_loss(x, y).tolist() == pytest.approx(expected, rel=1e-5)


def test_salient_ground_truth_is_union_of_spans_padded():
    targets = make_targets([9, 6, 7], seed=4)
    gt = salient_ground_truth(targets, 9)
    for b, target in enumerate(targets):
        length = target["salient_mask"].shape[1]
        for t in range(9):
            inside = t < length and bool((~target["salient_mask"][:, t]).any())
            assert gt[b, t].item() == float(inside)


def test_losses_against_explicit_formulas():
    cfg = default_config(**TINY)
    criterion = build_criterion(cfg)
    gen = torch.Generator().manual_seed(2)
    batch, queries, length = 2, 4, 8
    outputs = {"pred_boxes": torch.rand(batch, queries, 2, generator=gen) * torch.tensor([1.0, 0.5]),
               "actionness_logits": torch.randn(batch, queries, 1, generator=gen),
               "salient_logits": torch.randn(batch, length, 1, generator=gen)}
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[1, 6:] = True
    targets = make_targets([8, 6], seed=5)
    targets[1]["segments"][0, 1] = 1.3  # a target beyond [0, 1]: the loss IoU does not clamp it
    outputs["salient_gt"] = salient_ground_truth(targets, length)
    outputs["salient_loss_mask"] = mask
    matches = [(torch.tensor([0, 2][: len(targets[0]["labels"])]), torch.arange(len(targets[0]["labels"]))),
               (torch.tensor([3, 1][: len(targets[1]["labels"])]), torch.arange(len(targets[1]["labels"])))]
    losses = criterion(outputs, targets, matches)
    num_boxes = sum(len(t["labels"]) for t in targets)

    l1 = giou = 0.0
    for b, (qs, js) in enumerate(matches):
        for q, j in zip(qs.tolist(), js.tolist()):
            pc, pw = outputs["pred_boxes"][b, q].tolist()
            tc, tw = targets[b]["segments"][j].tolist()
            l1 += abs(pc - tc) + abs(pw - tw)
            s1, e1 = min(max(pc - pw / 2, 0), 1), min(max(pc + pw / 2, 0), 1)
            s2, e2 = tc - tw / 2, tc + tw / 2
            inter = max(0, min(e1, e2) - max(s1, s2))
            giou += 1 - inter / ((e1 - s1) + (e2 - s2) - inter)
    matched = {(b, q) for b, (qs, _) in enumerate(matches) for q in qs.tolist()}
    action = sum(focal(outputs["actionness_logits"][b, q, 0].item(), float((b, q) in matched))
                 for b in range(batch) for q in range(queries))
    salient = sum(sum(focal(outputs["salient_logits"][b, t, 0].item(), outputs["salient_gt"][b, t].item())
                      for t in range(length) if not mask[b, t]) / length for b in range(batch))
    assert losses["loss_bbox"].item() == pytest.approx(l1 / num_boxes, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(giou / num_boxes, rel=1e-5)
    assert losses["loss_actionness"].item() == pytest.approx(action / num_boxes, rel=1e-5)
    assert losses["loss_salient"].item() == pytest.approx(salient / num_boxes, rel=1e-5)
    assert set(criterion.weight_dict) == {"loss_bbox", "loss_giou", "loss_actionness", "loss_salient"}


def grads_after(model, loss) -> dict[str, bool]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}


@pytest.mark.parametrize("backbone", [False, True])
def test_gradients_reach_only_the_intended_parameters(backbone):
    torch.manual_seed(0)
    cfg = default_config(**TINY, enable_backbone=backbone)
    model, criterion = build_model(cfg).train(), build_criterion(cfg)
    with torch.no_grad():  # noise, so that zero-initialised layers (box head output) hide no gradient path
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    features, mask, targets = make_batch([12, 9, 12])
    features.requires_grad_(True)
    captured = {}
    model.refine_decoder.register_forward_pre_hook(lambda module, args: captured.update(roi=args[1]))
    outputs = model(features, mask)
    losses = criterion(outputs, targets)
    roi = captured["roi"]  # RoI windows and RoI features are constants (SPEC §5.9)
    assert not roi.weights.requires_grad and not roi.source.requires_grad

    every = grads_after(model, criterion.weighted_total(losses))
    never = {n for n, got in every.items() if not got}
    expected_never = {"logit_scale", "class_embed.weight", "class_embed.bias"}
    if not backbone:
        expected_never |= {"backbone.0.layers.0.weight", "backbone.0.layers.0.bias"}
    # layer 0's self-attention content projections see tgt = 0: their weights' gradient is 0 (as in the
    # original)
    expected_never |= {f"transformer.decoder.layers.0.{p}.weight"
                       for p in ("sa_qcontent_proj", "sa_kcontent_proj", "sa_v_proj")}
    assert never == expected_never

    salient = grads_after(model, losses["loss_salient"])
    reached = {n for n, got in salient.items() if got}
    assert reached and all(n.startswith(("salient_head", "transformer.encoder", "input_proj", "backbone"))
                           for n in reached)
    boxes = grads_after(model, losses["loss_bbox"])
    assert not any(got for n, got in boxes.items() if n.startswith(("salient_head", "actionness_embed")))
    assert boxes["refine_decoder.layers.0.cross_attn_local.in_proj_weight"]


def test_criterion_under_bfloat16_autocast_is_float32_and_finite():
    torch.manual_seed(0)
    cfg = default_config(**TINY)
    model, criterion = build_model(cfg).train(), build_criterion(cfg)
    features, mask, targets = make_batch([12, 9])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(features, mask)
    losses = criterion(outputs, targets)
    total = criterion.weighted_total(losses)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

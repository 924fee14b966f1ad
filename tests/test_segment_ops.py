import itertools

import pytest
import torch

from utils.segment_ops import (
    cw_to_t1t2,
    generalized_segment_iou,
    pairwise_generalized_segment_iou,
    pairwise_segment_iou,
    segment_iou,
    t1t2_to_cw,
)


def brute_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
    return inter / union


def brute_giou(a, b):
    hull = max(a[1], b[1]) - min(a[0], b[0])
    union = (a[1] - a[0]) + (b[1] - b[0]) - max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return brute_iou(a, b) - (hull - union) / hull


def random_segments(n, generator):
    start = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack((start, start + 0.01 + torch.rand(n, generator=generator, dtype=torch.float64)), dim=1)


def test_cw_t1t2_round_trip_and_values():
    cw = torch.tensor([[0.5, 0.2], [0.1, 0.4]])
    se = cw_to_t1t2(cw)
    assert torch.allclose(se, torch.tensor([[0.4, 0.6], [-0.1, 0.3]]))
    assert torch.allclose(t1t2_to_cw(se), cw)
    batch = torch.rand(3, 5, 2)
    assert torch.allclose(t1t2_to_cw(cw_to_t1t2(batch)), batch, atol=1e-6)


def test_pairwise_iou_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    a, b = random_segments(7, gen), random_segments(5, gen)
    iou, giou = pairwise_segment_iou(a, b), pairwise_generalized_segment_iou(a, b)
    for i, j in itertools.product(range(7), range(5)):
        assert iou[i, j].item() == pytest.approx(brute_iou(a[i].tolist(), b[j].tolist()), abs=1e-12)
        assert giou[i, j].item() == pytest.approx(brute_giou(a[i].tolist(), b[j].tolist()), abs=1e-12)
    assert torch.equal(segment_iou(a[:5], b), torch.diagonal(iou[:5]))
    assert torch.equal(generalized_segment_iou(a[:5], b), torch.diagonal(giou[:5]))


def test_iou_special_cases():
    a = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 3.0], [0.5, 1.5]])
    assert segment_iou(a, b).tolist() == pytest.approx([1.0, 0.0, 1 / 3])
    # disjoint: gIoU goes negative with the gap, IoU stays 0
    assert generalized_segment_iou(a, b).tolist() == pytest.approx([1.0, -1 / 3, 1 / 3])

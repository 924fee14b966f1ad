import itertools
import math

import pytest
import torch

from models.matcher import HungarianMatcher


def random_case(batch, queries, counts, seed):
    gen = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_boxes": torch.rand(batch, queries, 2, generator=gen) * torch.tensor([1.2, 0.6])
        - torch.tensor([0.1, 0]),
        "actionness_logits": torch.randn(batch, queries, 1, generator=gen) * 2,
    }
    targets = []
    for n in counts:
        center = torch.rand(n, generator=gen)
        width = 0.05 + 0.5 * torch.rand(n, generator=gen)
        targets.append({"segments": torch.stack((center, width), 1),
                        "labels": torch.zeros(n, dtype=torch.int64)})
    return outputs, targets


def pair_cost(box, logit, tgt):
    """The matcher's cost of one (query, target) pair, written out in float64."""
    p = 1 / (1 + math.exp(-logit))
    cls = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p ** 2 * -math.log(1 - p + 1e-8)
    l1 = abs(box[0] - tgt[0]) + abs(box[1] - tgt[1])

    def se(cw):
        return min(max(cw[0] - cw[1] / 2, 0.0), 1.0), min(max(cw[0] + cw[1] / 2, 0.0), 1.0)

    (s1, e1), (s2, e2) = se(box), se(tgt)
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    iou = inter / ((e1 - s1) + (e2 - s2) - inter)
    return 5 * l1 + 2 * cls - 2 * iou


@pytest.mark.parametrize("seed", range(6))
def test_matcher_is_optimal_against_brute_force(seed):
    queries = 5
    counts = [1 + seed % 3, 3, 0 if seed % 2 else 2]
    outputs, targets = random_case(len(counts), queries, counts, seed)
    matches = HungarianMatcher()(outputs, targets)
    for b, (rows, cols) in enumerate(matches):
        n = counts[b]
        assert len(rows) == len(cols) == min(queries, n)
        assert rows.dtype == cols.dtype == torch.int64
        assert torch.equal(rows, rows.sort().values)
        cost = [[pair_cost(outputs["pred_boxes"][b, q].tolist(), outputs["actionness_logits"][b, q, 0].item(),
                           targets[b]["segments"][j].tolist()) for j in range(n)] for q in range(queries)]
        assignments = itertools.permutations(range(queries), n)  # target j -> query perm[j]
        best = min((sum(cost[q][j] for j, q in enumerate(perm)) for perm in assignments), default=0.0)
        got = sum(cost[q][j] for q, j in zip(rows.tolist(), cols.tolist()))
        assert got == pytest.approx(best, abs=1e-5)


def test_cost_matrix_entries_and_weights():
    outputs, targets = random_case(2, 4, [2, 3], seed=11)
    matcher = HungarianMatcher(cost_class=2, cost_bbox=5, cost_giou=2)
    cost, sizes = matcher.cost_matrix(outputs, targets)
    assert sizes == [2, 3] and cost.shape == (2, 4, 5)
    segments = torch.cat([t["segments"] for t in targets])
    for b, q, j in itertools.product(range(2), range(4), range(5)):
        expected = pair_cost(outputs["pred_boxes"][b, q].tolist(),
                             outputs["actionness_logits"][b, q, 0].item(), segments[j].tolist())
        assert cost[b, q, j].item() == pytest.approx(expected, abs=2e-5)
    # the class cost uses the fixed focal parameters, the other weights scale their terms
    only_l1 = HungarianMatcher(cost_class=0, cost_bbox=1, cost_giou=0).cost_matrix(outputs, targets)[0]
    l1 = torch.cdist(outputs["pred_boxes"].flatten(0, 1), segments, p=1).view(2, 4, 5)
    assert torch.allclose(only_l1, l1)


def test_more_targets_than_queries_matches_every_query():
    outputs, targets = random_case(1, 2, [4], seed=3)
    rows, cols = HungarianMatcher()(outputs, targets)[0]
    assert rows.tolist() == [0, 1] and len(set(cols.tolist())) == 2

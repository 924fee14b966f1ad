import pytest
import torch

from models.proposal_scorer import ProposalScorer
from models.roi_align import roi_align_1d, roi_align_weights, roi_windows


def boxes_for_windows(windows, length):
    """Normalised (center, width) boxes whose RoI windows are `windows` (snippet units) for Tv = length."""
    w = torch.tensor(windows, dtype=torch.float64)
    return torch.stack(((w[:, 0] + w[:, 1]) / 2 / length, (w[:, 1] - w[:, 0]) / length), 1).float()[None]


# SPEC Appendix B item 4: single channel, T = 10, v_j = j^2, 4 bins
APPENDIX_B = [((0.0, 10.0), [2.19444, 14.69444, 39.69444, 73.5]),
              ((2.3, 7.9), [9.35, 19.6, 33.95, 52.15]),
              ((8.5, 10.0), [75.6875, 81.0, 81.0, 81.0]),
              ((3.0, 3.2), [9.875, 11.625, 13.375, 15.125])]


def test_appendix_b_vectors():
    features = (torch.arange(10.0) ** 2)[None, :, None]
    lengths = torch.tensor([10])
    boxes = boxes_for_windows([w for w, _ in APPENDIX_B], 10)
    expected = torch.tensor([v for _, v in APPENDIX_B])
    via_torchvision = roi_align_1d(features, boxes, lengths, 4)[0, :, :, 0]
    via_matrix = (roi_align_weights(boxes, lengths, 4, 10) @ features[0])[0, :, :, 0]
    assert torch.allclose(via_torchvision, expected, atol=2e-4)
    assert torch.allclose(via_matrix, expected, atol=2e-4)
    first16 = roi_align_1d(features, boxes[:, :1], lengths, 16)[0, 0, :3, 0]
    assert torch.allclose(first16, torch.tensor([0.3125, 0.9375, 2.6875]), atol=1e-5)


def test_matrix_form_equals_torchvision_on_padded_batches():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([20, 13, 7])
    features = torch.randn(3, 20, 5, generator=gen)
    centers = torch.rand(3, 12, generator=gen) * 1.4 - 0.2
    boxes = torch.stack((centers, torch.rand(3, 12, generator=gen) * 0.9), -1)
    boxes[:, :3, 1] = torch.tensor([1e-4, 0.02, 2.0])  # narrower than one snippet, and wider than the item
    boxes[0, 3] = torch.tensor([1.2, 0.1])  # clamped to [T, T], widened to [T, T+1]: points beyond T read 0
    weights = roi_align_weights(boxes, lengths, 16, 20)
    matrix = torch.einsum("bqst,btc->bqsc", weights, features)
    assert torch.allclose(matrix, roi_align_1d(features, boxes, lengths, 16), atol=1e-5)
    sums = weights.sum(-1)  # every bin is a mean of its sample points, a point beyond T counting as 0
    assert torch.all(sums <= 1 + 1e-6) and sums[0, 3].max() < 1
    assert torch.allclose(sums[1:], torch.ones(2, 12, 16), atol=1e-6)


def test_windows_clamped_to_valid_length():
    boxes = torch.tensor([[[0.5, 2.0], [-0.3, 0.2], [0.9, 0.4]]])
    windows = roi_windows(boxes, torch.tensor([8]))
    assert windows.tolist() == [[[0.0, 8.0], [0.0, 0.0], [pytest.approx(5.6), 8.0]]]


def test_padded_item_reads_padding_rows_tv_and_tv_plus_1_only():
    """SPEC quirk 27: sampling uses the padded length T. A segment ending at Tv reads padding row Tv; a window
    clamped to [Tv, Tv] is widened to one snippet and reads rows Tv and Tv+1; nothing beyond."""
    valid, length = 7, 20
    boxes = torch.tensor([[[0.75, 0.5], [0.2, 0.3], [1.3, 0.2]]])  # ends at Tv / inside / right of Tv
    weights = roi_align_weights(boxes, torch.tensor([valid]), 16, length)
    assert weights[0, 0, :, valid].sum() > 0 and torch.all(weights[0, 0, :, valid + 1:] == 0)
    assert torch.all(weights[0, 1, :, valid:] == 0)
    assert torch.all(weights[0, 2, :, :valid] == 0) and weights[0, 2, :, valid + 1].sum() > 0
    assert torch.all(weights[..., valid + 2:] == 0)


def test_proposal_scorer_cosine_logits():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, 10, 4, generator=gen)
    text = torch.randn(3, 4, generator=gen)
    boxes = torch.tensor([[[0.5, 0.4], [0.3, 0.2]], [[0.6, 0.8], [0.1, 0.1]]])
    lengths = torch.tensor([10, 6])
    scale = torch.tensor(4.6)
    logits = ProposalScorer(4)(features, boxes, lengths, text, scale)
    pooled = roi_align_1d(features + 1e-4, boxes, lengths, 4).mean(2)
    cosine = torch.nn.functional.cosine_similarity(pooled[:, :, None], text[None, None], dim=-1)
    expected = scale.exp() * cosine
    assert torch.allclose(logits, expected, atol=1e-4)
    after = ProposalScorer(4, strategy="after_pred")(features, boxes, lengths, text, scale)
    bins = roi_align_1d(features + 1e-4, boxes, lengths, 4)
    per_bin = torch.nn.functional.cosine_similarity(bins[:, :, :, None], text[None, None, None], dim=-1)
    assert torch.allclose(after, scale.exp() * per_bin.mean(2), atol=1e-4)
    raw = ProposalScorer(4, norm_embed=False, exp_logit_scale=False)(features, boxes, lengths, text, scale)
    assert torch.allclose(raw, scale * pooled @ text.t(), atol=1e-4)

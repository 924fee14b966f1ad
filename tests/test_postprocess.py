import itertools

import pytest
import torch

from models.postprocess import PostProcess, class_probabilities


def outputs_case(batch=2, queries=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "pred_boxes": torch.stack((torch.rand(batch, queries, generator=gen) * 1.2 - 0.1,
                                   torch.rand(batch, queries, generator=gen) * 0.8), -1),
        "actionness_logits": torch.randn(batch, queries, 1, generator=gen),
        "class_logits": torch.randn(batch, queries, classes, generator=gen) * 5,
    }


def test_probability_variants():
    out = outputs_case()
    a, z = out["actionness_logits"], out["class_logits"]
    assert torch.allclose(class_probabilities(z, a), a.sigmoid() * z.softmax(-1))
    before = class_probabilities(z, a, weight_type="before_softmax")
    assert torch.allclose(before, (a.sigmoid() * z).softmax(-1))
    assert torch.allclose(class_probabilities(z, a, "sigmoid"), a.sigmoid() * z.sigmoid())
    assert torch.allclose(class_probabilities(z, a, "none_mul"), z.softmax(-1))
    # the original ignores the weight type under sigmoid (options/model_thumos_sigmoid_before_f64.pt)
    assert torch.equal(class_probabilities(z, a, "sigmoid", "before_softmax"), a.sigmoid() * z.sigmoid())


def test_class_agnostic_topk_against_brute_force():
    out = outputs_case()
    durations = torch.tensor([30.0, 12.5])
    dets = PostProcess("class_agnostic", topk=7)(out, durations)
    prob = class_probabilities(out["class_logits"], out["actionness_logits"])
    for b, det in enumerate(dets):
        ranked = sorted(((prob[b, q, c].item(), q, c) for q, c in itertools.product(range(6), range(3))),
                        reverse=True)[:7]
        assert det["scores"].tolist() == pytest.approx([s for s, _, _ in ranked])
        assert det["query_ids"].tolist() == [q for _, q, _ in ranked]
        assert det["labels"].tolist() == [c for _, _, c in ranked]
        for (_, q, _), segment in zip(ranked, det["segments"]):
            c, w = out["pred_boxes"][b, q].tolist()
            duration = durations[b].item()
            expected = [min(max(c - w / 2, 0), 1) * duration, min(max(c + w / 2, 0), 1) * duration]
            assert segment.tolist() == pytest.approx(expected, abs=1e-5)
        assert torch.all(det["segments"] >= 0) and torch.all(det["segments"] <= durations[b])


def test_topk_capped_by_candidates():
    out = outputs_case(queries=4, classes=2)
    dets = PostProcess("class_agnostic", topk=100)(out, torch.tensor([1.0, 2.0]))
    assert all(len(d["scores"]) == 8 for d in dets)


def test_class_specific_and_class_one():
    out = outputs_case()
    prob = class_probabilities(out["class_logits"], out["actionness_logits"])
    dets = PostProcess("class_specific", topk=2)(out, torch.tensor([1.0, 1.0]))
    for b, det in enumerate(dets):
        assert det["query_ids"].tolist() == [q for q in range(6) for _ in range(2)]
        top = prob[b].topk(2, dim=-1)
        assert torch.equal(det["labels"], top.indices.flatten())
        assert torch.allclose(det["scores"], top.values.flatten())
    dets = PostProcess("class_one", topk=1)(out, torch.tensor([1.0, 1.0]))
    for b, det in enumerate(dets):
        best = prob[b].mean(0).argmax().item()
        assert det["labels"].tolist() == [best] * 6
        assert torch.allclose(det["scores"], prob[b, :, best])
        assert det["query_ids"].tolist() == list(range(6))


def test_missing_class_logits_is_a_clear_error():
    out = outputs_case()
    del out["class_logits"]
    with pytest.raises(KeyError, match="text_embeddings"):
        PostProcess()(out, torch.tensor([1.0, 1.0]))

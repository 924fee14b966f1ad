import math

import pytest
import torch

from models.build import build_criterion, build_model, build_postprocessor
from models.criterion import SetCriterion
from models.heads import inverse_sigmoid
from models.position_encoding import SinePositionEncoding, reference_sine_embedding
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from utils.config import default_config

TINY = dict(hidden_dim=16, nheads=2, dim_feedforward=32, enc_layers=2, dec_layers=2, num_queries=6,
            dropout=0.0)


def tiny_cfg(dataset="thumos14", **overrides):
    return default_config(**{**HEADLINE_MODEL_FLAGS[dataset], **TINY, **overrides})


def noisy_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # so that zero-initialised layers do not hide anything
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def padded_batch(lengths, channels=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = max(lengths)
    mask = torch.arange(length)[None] >= torch.tensor(lengths)[:, None]
    return torch.randn(len(lengths), length, channels, generator=gen).masked_fill(mask[..., None], 0), mask


def read_state_dict_listing(path):
    entries = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype, _ = line.split("\t")
        entries.append((name, tuple(json_ints(shape)), dtype))
    return entries


def json_ints(text):
    text = text.strip("[] ")
    return [int(x) for x in text.split(",")] if text else []


@pytest.mark.fidelity
@pytest.mark.parametrize("dataset, listing",
                         [("thumos14", "state_dict_thumos14.txt"), ("anet", "state_dict_anet.txt")])
def test_full_size_state_dict_matches_official_listing(reference_dir, dataset, listing):
    expected = read_state_dict_listing(reference_dir / listing)
    with torch.device("meta"):
        model = build_model(default_config(**HEADLINE_MODEL_FLAGS[dataset]))
    got = [(name, tuple(t.shape), str(t.dtype).replace("torch.", ""))
           for name, t in model.state_dict().items()]
    assert got == expected  # names, shapes, dtypes and order
    assert not list(model.buffers())


def test_sine_position_encoding_appendix_b():
    pos = SinePositionEncoding(512)(torch.tensor([[False, False, False, True]]))[0]
    assert pos[:, 0].tolist() == pytest.approx([0.86603, -0.86602, -1.7e-6, -1.7e-6], abs=2e-5)
    assert pos[:, 1].tolist() == pytest.approx([-0.5, -0.5, 1.0, 1.0], abs=2e-5)
    assert pos[:, 2].tolist() == pytest.approx([0.90063, -0.78281, -0.22022, -0.22022], abs=2e-5)
    sine = reference_sine_embedding(torch.tensor([0.25]), 512)[0]
    assert sine[:4].tolist() == pytest.approx([1.0, -4.4e-8, 0.99846, 0.05548], abs=2e-5)
    assert sine[-2:].tolist() == pytest.approx([0.00016283, 1.0], abs=1e-6)
    logits = inverse_sigmoid(torch.tensor([0.0, 0.25, 1.0])).tolist()
    assert logits == pytest.approx([-11.51293, -1.09861, 11.51293], abs=1e-4)


def test_logit_scale_parameter():
    model = build_model(tiny_cfg())
    names = [name for name, _ in model.named_parameters()]
    assert names[0] == "logit_scale"
    assert model.logit_scale.shape == () and model.logit_scale.dtype == torch.float32
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    model.set_logit_scale(3.0)
    assert model.logit_scale.item() == 3.0


@pytest.mark.parametrize("dataset", ["thumos14", "anet"])
def test_forward_keys_and_shapes(dataset):
    cfg = tiny_cfg(dataset)
    model = noisy_model(cfg).eval()
    features, mask = padded_batch([10, 7, 10])
    text = torch.randn(4, 16)
    with torch.no_grad():
        out = model(features, mask, text_embeddings=text, return_intermediates=True)
    assert out["pred_boxes"].shape == (3, 6, 2) and out["actionness_logits"].shape == (3, 6, 1)
    assert out["class_logits"].shape == (3, 6, 4) and out["salient_logits"].shape == (3, 10, 1)
    assert out["memory"].shape == (2, 3, 10, 16) and out["hs"].shape == (2, 3, 6, 16)
    assert "salient_gt" not in out   # a loss target: built by the criterion
    with torch.no_grad():
        assert "memory" not in model(features, mask) and "hs" not in model(features, mask)
    assert torch.all((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1))
    with torch.no_grad():
        assert "class_logits" not in model(features, mask)


@pytest.mark.parametrize("dataset", ["thumos14", "anet"])
def test_train_and_eval_orders_agree(dataset):
    """Eval mode follows the original's operation order, train mode cheaper reorderings of the same math."""
    cfg = tiny_cfg(dataset)
    model = noisy_model(cfg)
    features, mask = padded_batch([10, 7, 10])
    with torch.no_grad():
        train = model.train()(features, mask, return_intermediates=True)
        evaluated = model.eval()(features, mask, return_intermediates=True)
    for key in ("pred_boxes", "actionness_logits", "salient_logits", "hs"):
        assert torch.allclose(train[key], evaluated[key], atol=1e-5), key


@pytest.mark.parametrize("dataset", ["thumos14", "anet"])
def test_padded_snippets_do_not_influence_real_ones(dataset):
    """Values beyond row Tv+1 of a padded item never matter. Rows Tv and Tv+1 can, exactly as in the
    original: the salient head's k=3 convolution reads memory row Tv at position Tv-1; RoI sampling reads rows
    Tv (segments ending at Tv) and Tv+1 (windows clamped to [Tv, Tv]) (quirk 27); with --enable_backbone the
    k=3 backbone convolution mixes row Tv into real row Tv-1, and so into everything (harmless for
    ActivityNet, whose items are all resampled to the same length, hence never padded)."""
    cfg = tiny_cfg(dataset)
    model = noisy_model(cfg).eval()
    features, mask = padded_batch([12, 8])
    text = torch.randn(3, 16)
    perturbed = features.clone()
    perturbed[1, 10:] = 100 * torch.randn(2, 16)
    with torch.no_grad():
        a = model(features, mask, text_embeddings=text, return_intermediates=True)
        b = model(perturbed, mask, text_embeddings=text, return_intermediates=True)
    for key in ("pred_boxes", "actionness_logits", "class_logits", "hs"):
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert torch.allclose(a["memory"][:, :, :8], b["memory"][:, :, :8], atol=1e-6)
    assert torch.allclose(a["salient_logits"][1, :8], b["salient_logits"][1, :8], atol=1e-6)

    if cfg.enable_backbone:
        return
    # row Tv itself: encoder memory and the decoder are still unaffected (keys are masked), the salient
    # logit at Tv-1 is not (its convolution reads memory row Tv)
    perturbed = features.clone()
    perturbed[1, 8] = 100 * torch.randn(16)
    with torch.no_grad():
        c = model(perturbed, mask, text_embeddings=text, return_intermediates=True)
    assert torch.allclose(a["memory"][:, :, :8], c["memory"][:, :, :8], atol=1e-6)
    assert torch.allclose(a["hs"], c["hs"], atol=1e-6)
    assert torch.allclose(a["salient_logits"][1, :7], c["salient_logits"][1, :7], atol=1e-6)
    assert not torch.allclose(a["salient_logits"][1, 7], c["salient_logits"][1, 7], atol=1e-3)


def test_padding_does_not_change_losses():
    cfg = tiny_cfg()
    model, criterion = noisy_model(cfg).train(), build_criterion(cfg)
    features, mask = padded_batch([12, 8])
    steps = torch.arange(8)
    targets = [{"segments": torch.tensor([[0.5, 0.3]]), "labels": torch.zeros(1, dtype=torch.int64),
                "salient_mask": (torch.arange(12) < 4)[None] | (torch.arange(12) > 7)[None]},
               {"segments": torch.tensor([[0.3, 0.25]]), "labels": torch.zeros(1, dtype=torch.int64),
                "salient_mask": ((steps < 1) | (steps > 3))[None]}]
    perturbed = features.clone()
    perturbed[1, 10:] = 50.0
    losses = [criterion(model(f, mask), targets) for f in (features, perturbed)]
    for key in losses[0]:
        assert losses[0][key].item() == pytest.approx(losses[1][key].item(), abs=1e-6), key


@pytest.mark.parametrize("overrides, extra_keys", [
    (dict(position_embedding="learned"), {"backbone.1.col_embed.weight": (1000, 16)}),
    (dict(backbone_layers=2, enable_backbone=True), {"backbone.0.layers.1.weight": (16, 16, 3)}),
    (dict(refine_cat_type="concat1"), {"refine_decoder.layers.0.proj_head.weight": (16, 32),
                                       "refine_decoder.layers.0.self_attn.in_proj_weight": (96, 32)}),
    (dict(refine_cat_type="concat2"), {"refine_decoder.layers.0.proj_head.weight": (16, 32)}),
    (dict(refine_layer_num=2), {"refine_decoder.layers.1.self_attn.in_proj_weight": (48, 16)}),
    (dict(refine_drop_sa=True), {}),
    (dict(refine_drop_saResidual=False), {}),
    (dict(enable_refine=False, salient_loss=False), {}),
    (dict(pooling_type="max"), {}),
    (dict(pooling_type="self_attention"), {}),
    (dict(ROIalign_strategy="after_pred", ROIalign_size=8), {}),
    (dict(ROIalign_strategy="after_pred", pooling_type="max"), {}),  # after_pred ignored, as the original
    (dict(refine_cat_type="concat1", refine_drop_sa=True), {"refine_decoder.layers.0.proj_head.weight": (16, 32)}),
    (dict(refine_fusion_type="mean"), {}),
    (dict(refine_fusion_type="max"), {}),
    (dict(pooling_type="center2"), {}),
    (dict(salient_loss_impl="CE"), {}),
    (dict(enable_posPrior=True), {"query_embed.weight": (6, 1),
                                  "transformer.decoder.ref_point_head.layers.1.weight": (16, 16)}),
    (dict(eval_proposal=True), {}),
    (dict(enable_classAgnostic=False, actionness_loss=True), {"class_embed.weight": (16, 16)}),
    (dict(prob_type="sigmoid", proposals_weight_type="before_softmax"), {}),
])
def test_supported_variants_build_train_and_infer(overrides, extra_keys):
    cfg = tiny_cfg(**overrides)
    model, criterion = noisy_model(cfg), build_criterion(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in extra_keys.items():
        assert shapes[key] == shape
    assert ("salient_head.0.weight" in shapes) == cfg.salient_loss
    assert ("refine_decoder.layers.0.cross_attn_local.in_proj_weight" in shapes) == cfg.enable_refine
    features, mask = padded_batch([10, 7])
    targets = [{"segments": torch.tensor([[0.5, 0.2]]), "labels": torch.zeros(1, dtype=torch.int64),
                "semantic_labels": torch.tensor([n % 3]), "salient_mask": torch.ones(1, n, dtype=torch.bool)}
               for n in (10, 7)]
    text = torch.randn(3, 16)
    losses = criterion(model.train()(features, mask, text_embeddings=text), targets)
    assert ("loss_ce" in losses) == (not cfg.enable_classAgnostic)
    criterion.weighted_total(losses).backward()
    with torch.no_grad():
        out = model.eval()(features, mask, text_embeddings=text)
    assert torch.isfinite(out["class_logits"]).all() and out["class_logits"].shape == (2, 6, 3)
    detections = build_postprocessor(cfg)(out, torch.tensor([10.0, 7.0]))
    assert torch.isfinite(detections[0]["scores"]).all()
    if cfg.eval_proposal:  # proposals: one "class", scored by actionness
        assert detections[0]["labels"].eq(0).all() and len(detections[0]["scores"]) == 6


def test_float64_end_to_end():
    """model.double() with float64 inputs: outputs, losses, gradients and detections stay float64."""
    cfg = tiny_cfg("anet", enable_backbone=True)
    model, criterion = noisy_model(cfg).double(), build_criterion(cfg)
    features, mask = padded_batch([10, 7])
    features = features.double()
    targets = [{"segments": torch.tensor([[0.5, 0.2]], dtype=torch.float64), "labels": torch.zeros(1).long(),
                "salient_mask": torch.ones(1, n, dtype=torch.bool)} for n in (10, 7)]
    out = model.train()(features, mask)
    losses = criterion(out, targets)
    assert all(value.dtype == torch.float64 for value in losses.values())
    criterion.weighted_total(losses).backward()
    assert all(p.grad.dtype == torch.float64 for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        out = model.eval()(features, mask, text_embeddings=torch.randn(3, 16, dtype=torch.float64))
    assert all(out[k].dtype == torch.float64 for k in ("pred_boxes", "class_logits", "actionness_logits"))
    detections = build_postprocessor(cfg)(out, torch.tensor([10.0, 7.0]))
    assert detections[0]["scores"].dtype == detections[0]["segments"].dtype == torch.float64


@pytest.mark.parametrize("flag, value, reason", [
    ("pre_norm", True, "pre-norm"), ("target_type", "none", "crashes"),
    ("enable_classAgnostic", False, "--actionness_loss"),
    ("refine_cat_type", "concat1", "crashes"),
])
def test_unsupported_flags_raise_naming_the_flag(flag, value, reason):
    overrides = {flag: value, **({"refine_drop_saResidual": False} if flag == "refine_cat_type" else {})}
    with pytest.raises(NotImplementedError, match=f"--{flag}.*{reason}"):
        build_model(tiny_cfg(**overrides))


def test_bad_inputs_are_clear_errors():
    model = build_model(tiny_cfg())
    features, mask = padded_batch([5, 4])
    with pytest.raises(ValueError, match="bool mask"):
        model(features, mask.float())
    with pytest.raises(ValueError, match="salient_mask"):
        SetCriterion.salient_target(model(features, mask), [{"salient_mask": torch.ones(1, 9, dtype=torch.bool)}] * 2)


def test_dropout_keeps_with_probability_1_minus_p_and_rescales():
    from models.transformer import Dropout, dropout

    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5
    out = dropout(x, 0.1)
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.003
    keep_probability = round(0.9 * 2 ** 16) / 2 ** 16  # the CPU mask's resolution is 2**-16
    assert torch.allclose(out[~dropped], x[~dropped] / keep_probability, rtol=1e-6)
    assert not torch.allclose(out[~dropped], x[~dropped] / 0.9, rtol=1e-6)  # the scale is the exact inverse
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    assert dropout(x.bfloat16(), 0.5).dtype == torch.bfloat16
    layer = Dropout(0.3).eval()
    assert layer(x) is x
    g = torch.ones_like(x, requires_grad=True)
    y = dropout(g, 0.2)
    y.sum().backward()
    assert torch.equal(g.grad, y.detach())  # gradient = the same mask


def test_cpu_dropout_masks_follow_torch_seed_and_are_independent():
    from models.transformer import dropout

    x = torch.ones(256, 1024)
    torch.manual_seed(3)
    first, second = dropout(x, 0.5) > 0, dropout(x, 0.5) > 0
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5) > 0, first)  # torch.manual_seed decides the mask
    assert not torch.equal(first, second)  # a new mask every call
    kept = first.float()
    assert abs(kept.mean().item() - 0.5) < 0.005
    # neighbours (also the four values cut from one 64-bit word) are uncorrelated
    centred = kept - kept.mean()
    for shift in (1, 2, 3, 4):
        correlation = (centred[:, shift:] * centred[:, :-shift]).mean() / centred.var()
        assert abs(correlation.item()) < 0.01
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert torch.equal(dropout(x, 1e-6), x)  # p below the mask's 2**-16 resolution keeps everything

"""The model, matcher, losses, gradients and post-processing against the official code's fixtures."""
import pytest
import torch

from scripts.check_reference import check_fixture, format_rows, main

FIXTURES = ["model_thumos14_seed0.pt", "model_anet_seed0.pt"]


@pytest.mark.fidelity
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_reproduced(reference_dir, name):
    rows = check_fixture(reference_dir / name)
    assert all(row.ok for row in rows), format_rows(rows, name)
    names = {row.quantity for row in rows}
    # every kind of quantity was compared, not skipped
    for quantity in ("eval.pred_boxes", "eval.class_logits", "eval.salient_logits", "eval.detections.scores",
                     "train.matching (query idx)", "train.losses.loss_salient", "train.weighted_total"):
        assert quantity in names
    assert any(q.startswith("grad ") for q in names) and any(q.startswith("grad_summary.") for q in names)


@pytest.mark.fidelity
def test_check_reference_exits_nonzero_on_a_difference(reference_dir, tmp_path, capsys):
    fixture = torch.load(reference_dir / FIXTURES[0], weights_only=False)
    fixture["eval"]["outputs"]["class_logits"] = fixture["eval"]["outputs"]["class_logits"] + 2e-5
    fixture["train"]["losses"]["loss_giou"] += 1e-3
    path = tmp_path / "perturbed.pt"
    torch.save(fixture, path)
    assert main([str(path)]) == 1
    table = capsys.readouterr().out
    failed = [line.split()[0] for line in table.splitlines() if " FAIL " in line]
    assert failed == ["eval.class_logits", "eval.class_logits", "train.losses.loss_giou"]


def test_check_reference_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(KeyError, match="not a reference model fixture"):
        check_fixture(path)


def _make_fixture(path, flags: dict, lengths: list[int], num_classes: int, seed: int) -> None:
    """A fixture in the official format whose references come from this implementation (self-consistent):
    it checks that check_reference.py handles other batch sizes, lengths, queries, classes, top-k and seeds,
    not fidelity (the official fixtures above do that)."""
    from models.build import build_criterion, build_model, build_postprocessor
    from scripts.check_reference import config_from_flags, cpu_threads

    gen = torch.Generator().manual_seed(seed)
    cfg = config_from_flags(flags)
    batch, length, channels = len(lengths), max(lengths), cfg.hidden_dim
    mask = torch.arange(length)[None] >= torch.tensor(lengths)[:, None]
    features = torch.randn(batch, length, channels, generator=gen).masked_fill(mask[..., None], 0)
    durations = torch.tensor(lengths, dtype=torch.float32) / 3.75
    text = torch.randn(num_classes, channels, generator=gen)
    targets = []
    for index, item_length in enumerate(lengths):
        count = 1 + index % 3
        starts = torch.rand(count, generator=gen) * 0.6
        ends = starts + 0.1 + torch.rand(count, generator=gen) * 0.3
        snippets = torch.arange(item_length) / item_length
        salient_mask = ~((snippets[None] >= starts[:, None]) & (snippets[None] <= ends[:, None]))
        targets.append({"segments": torch.stack([(starts + ends) / 2, ends - starts], dim=1),
                        "labels": torch.zeros(count, dtype=torch.int64),
                        "semantic_labels": torch.randint(0, num_classes, (count,), generator=gen),
                        "salient_mask": salient_mask, "video_duration": float(durations[index]),
                        "video_name": f"item{index}"})
    with cpu_threads(2):
        torch.manual_seed(seed)
        model = build_model(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        model.eval()
        with torch.no_grad():
            eval_out = model(features, mask, text_embeddings=text)
        detections = build_postprocessor(cfg)(eval_out, durations)
        model.train()
        train_out = model(features, mask, targets=targets)
        criterion = build_criterion(cfg)
        matching = criterion.matcher(train_out, targets)
        losses = criterion(train_out, targets, matching)
        total = criterion.weighted_total(losses)
        total.backward()
    params = dict(model.named_parameters())
    eval_keys = ("pred_boxes", "actionness_logits", "class_logits", "salient_logits", "memory", "hs")
    train_keys = ("pred_boxes", "actionness_logits", "salient_logits", "salient_gt", "salient_loss_mask")
    torch.save({
        "flags": flags, "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "inputs": {"features": features, "mask": mask, "video_durations": durations},
        "text_embeddings": text, "targets": targets,
        "eval": {"outputs": {k: eval_out[k] for k in eval_keys}, "detections": detections},
        "train": {"outputs": {k: train_out[k].detach() for k in train_keys}, "matching": matching,
                  "losses": {k: float(v.detach()) for k, v in losses.items()},
                  "weighted_total": float(total.detach()),
                  "grads": {n: params[n].grad.clone() for n in ("bbox_embed.layers.2.weight",
                                                                "input_proj.weight")},
                  "params_without_grad": [n for n, p in params.items() if p.grad is None]},
    }, path)


@pytest.mark.parametrize("dataset,lengths,classes,seed",
                         [("anet", [37, 50, 12, 50], 3, 5), ("thumos14", [29], 7, 11)])
def test_check_reference_handles_fixtures_of_other_shapes(tmp_path, capsys, dataset, lengths, classes, seed):
    from models.build import HEADLINE_MODEL_FLAGS

    flags = {**HEADLINE_MODEL_FLAGS[dataset], "hidden_dim": 32, "dim_feedforward": 48, "nheads": 4,
             "num_queries": 7, "dropout": 0.0, "postprocess_topk": 9, "seed": seed}
    path = tmp_path / "variant.pt"
    _make_fixture(path, flags, lengths, classes, seed)
    assert main([str(path)]) == 0, capsys.readouterr().out
    table = capsys.readouterr().out
    assert "eval.detections.scores" in table and "train.losses.loss_salient" in table and " FAIL " not in table
    fixture = torch.load(path, weights_only=False)
    queries, targets = fixture["train"]["matching"][-1]
    fixture["train"]["matching"][-1] = ((queries + 1) % flags["num_queries"], targets)
    torch.save(fixture, path)
    assert main([str(path)]) == 1
    assert "train.matching (query idx)" in capsys.readouterr().out

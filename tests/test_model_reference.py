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

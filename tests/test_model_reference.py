"""The model, matcher, losses, gradients, post-processing and training loop against the official code's
fixtures (every file of ../shared/fixtures/reference, each in its own precision)."""
import pytest
import torch

from scripts.check_reference import check_fixture, format_rows, main

MODEL_FIXTURES = ["model_thumos14_seed0.pt", "model_anet_seed0.pt",
                  "model_thumos14_seed0_f64.pt", "model_anet_seed0_f64.pt"]
OPTION_FIXTURES = ["options/" + name for name in (
    "model_thumos_noagnostic_f64.pt", "model_anet_noagnostic_f64.pt", "model_thumos_evalproposal_f64.pt",
    "model_thumos_posprior.pt", "model_anet_fusionmean_f64.pt", "model_thumos_fusionmax_f64.pt",
    "model_thumos_salientCE_f64.pt", "model_anet_center2_f64.pt", "model_thumos_sigmoid_before_f64.pt",
    "model_thumos_afterpred_max_f64.pt", "model_anet_concat_dropsa_f64.pt")]
TRAJECTORY_FIXTURES = ["trajectory_thumos14_seed5_f64.pt", "trajectory_anet_seed6_f64.pt"]


_ROWS: dict = {}


def _rows(reference_dir, name):
    """check_fixture once per fixture and session (several tests read the same table)."""
    if name not in _ROWS:
        _ROWS[name] = check_fixture(reference_dir / name)
    return _ROWS[name]


def _assert_all_ok(rows, name):
    assert rows and all(row.ok for row in rows), format_rows(rows, name)


@pytest.mark.fidelity
@pytest.mark.parametrize("name", MODEL_FIXTURES + OPTION_FIXTURES)
def test_fixture_reproduced(reference_dir, name):
    rows = _rows(reference_dir, name)
    _assert_all_ok(rows, name)
    names = {row.quantity for row in rows}
    # every kind of quantity was compared, not skipped
    for quantity in ("eval.pred_boxes", "eval.class_logits", "eval.salient_logits", "train.matching (query idx)",
                     "train.losses.loss_salient", "train.weighted_total", "params without gradient"):
        assert quantity in names
    assert any(q.startswith("eval.detections.scores") for q in names)
    assert any(q.startswith("grad ") for q in names) and any(q.startswith("grad_summary.") for q in names)
    if "f64" in name:  # double precision: everything end to end, far below the float32 tolerance
        for row in rows:
            assert "excluded" not in row.criterion and row.max_abs_diff < 1e-8, row
    if "noagnostic" in name:
        assert {"train.losses.loss_ce", "train.class_logits"} <= names


@pytest.mark.fidelity
def test_float32_fixture_reports_what_it_excludes(reference_dir):
    rows = {row.quantity: row for row in _rows(reference_dir, MODEL_FIXTURES[0])}
    row = rows["eval.class_logits"]
    assert " queries" in row.criterion and "bit-identical" in row.criterion  # the row says what it left out
    # the teacher-forced rows cover every query
    assert "eval.class_logits | given reference pred_boxes" in rows


@pytest.mark.fidelity
@pytest.mark.parametrize("name", TRAJECTORY_FIXTURES)
def test_trajectory_reproduced(reference_dir, name):
    rows = check_fixture(reference_dir / name)
    _assert_all_ok(rows, name)
    names = " ".join(row.quantity for row in rows)
    for quantity in ("param_groups", ".weighted_total", ".losses.loss_bbox", ".grad_norm_before_clip", "lrs (",
                     "final_state_dict"):
        assert quantity in names


@pytest.mark.fidelity
def test_check_reference_exits_nonzero_on_a_difference(reference_dir, tmp_path, capsys):
    fixture = torch.load(reference_dir / "model_thumos14_seed0_f64.pt", weights_only=False)
    fixture["eval"]["outputs"]["class_logits"] = fixture["eval"]["outputs"]["class_logits"] + 1e-8
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
    with pytest.raises(ValueError, match="not a reference fixture"):
        check_fixture(path)
    from utils.cli import run_cli
    assert run_cli(main, [str(tmp_path / "missing.pt")]) == 1


def _make_fixture(path, flags: dict, lengths: list[int], num_classes: int, seed: int,
                  dtype: torch.dtype = torch.float32) -> None:
    """A fixture in the official format whose references come from this implementation (self-consistent):
    it checks that check_reference.py handles other batch sizes, lengths, queries, classes, top-k and seeds,
    not fidelity (the official fixtures above do that)."""
    from models.build import build_criterion, build_model, build_postprocessor
    from scripts.check_reference import config_from_flags

    gen = torch.Generator().manual_seed(seed)
    cfg = config_from_flags(flags)
    batch, length, channels = len(lengths), max(lengths), cfg.hidden_dim
    mask = torch.arange(length)[None] >= torch.tensor(lengths)[:, None]
    features = torch.randn(batch, length, channels, generator=gen, dtype=dtype).masked_fill(mask[..., None], 0)
    durations = torch.tensor(lengths, dtype=dtype) / 3.75
    text = torch.randn(num_classes, channels, generator=gen, dtype=dtype)
    targets = []
    for index, item_length in enumerate(lengths):
        count = 1 + index % 3
        starts = torch.rand(count, generator=gen) * 0.6
        ends = starts + 0.1 + torch.rand(count, generator=gen) * 0.3
        snippets = torch.arange(item_length) / item_length
        salient_mask = ~((snippets[None] >= starts[:, None]) & (snippets[None] <= ends[:, None]))
        targets.append({"segments": torch.stack([(starts + ends) / 2, ends - starts], dim=1).to(dtype),
                        "labels": torch.zeros(count, dtype=torch.int64),
                        "semantic_labels": torch.randint(0, num_classes, (count,), generator=gen),
                        "salient_mask": salient_mask, "video_duration": float(durations[index]),
                        "video_name": f"item{index}"})
    torch.manual_seed(seed)
    model = build_model(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=dtype))
    model.eval()
    with torch.no_grad():
        eval_out = model(features, mask, text_embeddings=text, return_intermediates=True)
    detections = build_postprocessor(cfg)(eval_out, durations)
    model.train()
    train_out = model(features, mask, text_embeddings=text)
    criterion = build_criterion(cfg)
    train_out["salient_gt"] = criterion.salient_target(train_out, targets)
    matching = criterion.matcher(train_out, targets)
    losses = criterion(train_out, targets, matching)
    total = criterion.weighted_total(losses)
    total.backward()
    params = dict(model.named_parameters())
    eval_keys = ("pred_boxes", "actionness_logits", "class_logits", "salient_logits", "memory", "hs")
    train_keys = ("pred_boxes", "actionness_logits", "salient_logits", "salient_gt", "salient_loss_mask",
                  "class_logits")
    torch.save({
        "meta": {"dtype": str(dtype).replace("torch.", "")},
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


def _small_flags(dataset: str, seed: int, **changes) -> dict:
    from scripts.headline_flags import HEADLINE_MODEL_FLAGS

    return {**HEADLINE_MODEL_FLAGS[dataset], "hidden_dim": 32, "dim_feedforward": 48, "nheads": 4,
            "num_queries": 7, "dropout": 0.0, "postprocess_topk": 9, "seed": seed, **changes}


@pytest.mark.parametrize("dataset,lengths,classes,seed,dtype",
                         [("anet", [37, 50, 12, 50], 3, 5, torch.float32), ("thumos14", [29], 7, 11, torch.float32),
                          ("thumos14", [29, 20], 4, 12, torch.float64)])
def test_check_reference_handles_fixtures_of_other_shapes(tmp_path, capsys, dataset, lengths, classes, seed, dtype):
    flags = _small_flags(dataset, seed)
    path = tmp_path / "variant.pt"
    _make_fixture(path, flags, lengths, classes, seed, dtype)
    assert main([str(path)]) == 0, capsys.readouterr().out
    table = capsys.readouterr().out
    assert "eval.detections.scores" in table and "train.losses.loss_salient" in table and " FAIL " not in table
    fixture = torch.load(path, weights_only=False)
    queries, targets = fixture["train"]["matching"][-1]
    fixture["train"]["matching"][-1] = ((queries + 1) % flags["num_queries"], targets)
    torch.save(fixture, path)
    assert main([str(path)]) == 1
    assert "train.matching (query idx)" in capsys.readouterr().out


@pytest.mark.parametrize("changes", [dict(enable_classAgnostic=False, actionness_loss=True),
                                     dict(enable_posPrior=True, refine_fusion_type="max", pooling_type="center2")])
def test_check_reference_handles_option_fixtures(tmp_path, capsys, changes):
    """Any fixture of the documented format works, whatever its options (float64, self-consistent)."""
    path = tmp_path / "option.pt"
    _make_fixture(path, _small_flags("thumos14", 3, **changes), [29, 21], 4, 3, torch.float64)
    assert main([str(path)]) == 0, capsys.readouterr().out
    assert " FAIL " not in capsys.readouterr().out


def test_float32_exclusion_does_not_hide_a_real_difference(tmp_path, capsys):
    """A query whose reference box differs is left out of the end-to-end class-logit row, but a wrong class
    logit for it still fails through the teacher-forced row."""
    path = tmp_path / "f32.pt"
    _make_fixture(path, _small_flags("thumos14", 4), [29, 25], 5, 4)
    fixture = torch.load(path, weights_only=False)
    outputs = fixture["eval"]["outputs"]
    outputs["pred_boxes"][1, 2, 0] = torch.nextafter(outputs["pred_boxes"][1, 2, 0], torch.tensor(1.0))
    outputs["class_logits"][1, 2] += 0.5
    torch.save(fixture, path)
    assert main([str(path)]) == 1
    table = capsys.readouterr().out
    failed = [line.split(" FAIL ")[0].strip() for line in table.splitlines() if " FAIL " in line]
    assert failed[0].startswith("eval.class_logits | given reference pred_boxes")
    end_to_end = next(line for line in table.splitlines() if line.startswith("eval.class_logits "))
    assert " ok " in end_to_end and "excluded: the 1 whose float32 box" in end_to_end


def _make_trajectory(path, flags: dict, seed: int) -> None:
    """A float64 trajectory fixture (format T) recorded with this project's own training code: checks that
    check_reference.py replays any such file and catches differences (fidelity: the official ones above)."""
    from datasets.collate import collate_batch
    from models.build import build_criterion, build_model
    from scripts.check_reference import config_from_flags
    from utils.engine.loop import train_step
    from utils.engine.optim import build_optimization

    gen = torch.Generator().manual_seed(seed)
    cfg = config_from_flags(flags)
    batches = []
    for lengths in ([23, 17], [19, 23]):
        batch = []
        for length in lengths:
            snippets = torch.arange(length) / length
            salient_mask = ~((snippets >= 0.2) & (snippets <= 0.6))[None]
            batch.append((torch.randn(length, cfg.hidden_dim, generator=gen, dtype=torch.float64),
                          {"segments": torch.tensor([[0.4, 0.4]], dtype=torch.float64),
                           "labels": torch.zeros(1, dtype=torch.int64), "semantic_labels": torch.zeros(1).long(),
                           "salient_mask": salient_mask, "video_duration": length / 3.75,
                           "video_name": f"v{length}"}))
        batches.append(batch)
    torch.manual_seed(seed)
    model = build_model(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    criterion = build_criterion(cfg)
    optimizer, scheduler = build_optimization(model, cfg)
    steps, lrs = [], []
    model.train()
    for epoch in range(cfg.epochs):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        for index, batch in enumerate(batches):
            features, mask, targets, _ = collate_batch([(f, t, None) for f, t in batch], dtype=torch.float64)
            result = train_step(model, criterion, optimizer, features, mask, targets, cfg.clip_max_norm)
            steps.append({"epoch": epoch, "batch": index, "weighted_total": result.total,
                          "losses": result.losses, "grad_norm_before_clip": result.grad_norm})
        scheduler.step()
    torch.save({"meta": {"kind": "gap-official-trajectory-fixture", "dtype": "float64"}, "flags": flags,
                "init_state_dict": init, "batches": batches, "steps": steps, "lrs": lrs,
                "final_state_dict": {k: v.clone() for k, v in model.state_dict().items()}}, path)


def test_check_reference_replays_trajectories_and_catches_differences(tmp_path, capsys):
    path = tmp_path / "trajectory.pt"
    _make_trajectory(path, _small_flags("anet", 8, epochs=2, lr_drop=1, lr=1e-3, lr_backbone=1e-2), 8)
    assert main(["--threads", "1", str(tmp_path)]) == 0, capsys.readouterr().out
    assert "(1 threads)" in capsys.readouterr().out
    fixture = torch.load(path, weights_only=False)
    fixture["steps"][2]["grad_norm_before_clip"] += 1e-9
    fixture["lrs"][-1][0] *= 10  # as if the schedule had not stepped
    name = next(iter(fixture["final_state_dict"]))
    fixture["final_state_dict"][name] = fixture["final_state_dict"][name] + 1e-11
    torch.save(fixture, path)
    assert main([str(path)]) == 1
    failed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if " FAIL " in line]
    assert failed == ["steps[4].grad_norm_before_clip", "lrs", "final_state_dict"]

"""`--compile`: the flag, the modules a run gets, and checkpoints that stay plain state_dicts (a compiled run's
checkpoints load strictly into a plain model; it resumes uncompiled and back). The compiled model against
the fidelity fixtures (outputs, losses, gradients): tests/test_compile_reference.py."""

import copy

import pytest
import torch
import yaml

import main as train_main
from models.build import build_criterion, build_model
from scripts.bench_model import synthetic_batch
from tests.test_end_to_end import tiny_config  # noqa: F401 - the module-scoped tiny run configuration
from tests.test_model import noisy_model, tiny_cfg
from utils.config import config_differences, dump_config, parse_config
from utils.engine.checkpoint import load_model_weights, read_state_dict, save_state_dict
from utils.engine.compiled import compiled, run_modules
from utils.engine.loop import train_step


def test_compile_flag_is_recorded_and_may_change_on_resume(tmp_path):
    assert parse_config([]).compile is False
    cfg = parse_config(["--compile"])
    assert cfg.compile is True and parse_config(["--compile", "false"]).compile is False
    saved = yaml.safe_load(dump_config(cfg, tmp_path / "config.yaml").read_text())
    assert saved["compile"] is True  # recorded with the run, like every flag
    # an execution flag (like --device, --num_workers): a run may resume with or without it
    assert config_differences(saved, parse_config([])) == {}
    assert "amp" in config_differences({**saved, "amp": True}, parse_config([]))  # numbers flags still count


def test_run_modules_compile_wrappers_that_share_the_plain_models_parameters():
    model = build_model(tiny_cfg(enc_layers=1, dec_layers=1))
    assert run_modules(model, model, False, torch.device("cpu")) == (model, model)
    trains, predicts = run_modules(model, model, True, torch.device("cpu"))
    assert trains is predicts and trains is not model and trains._orig_mod is model
    assert all(a is b for a, b in zip(trains.parameters(), model.parameters()))
    wrapper = torch.nn.ModuleDict({"module": model})  # stands in for DistributedDataParallel
    trains, predicts = run_modules(model, wrapper, True, torch.device("cpu"))
    assert trains._orig_mod is wrapper and predicts._orig_mod is model  # DDP first, then compile
    # what the wrappers would save has other names; runs save `model` itself
    assert all(key.startswith("_orig_mod.") for key in predicts.state_dict())


def test_compiled_training_step_saves_a_plain_checkpoint(tmp_path):
    """Dynamo and AOTAutograd as --compile runs them, with aot_eager in place of inductor's code generation
    (seconds, not minutes): the step trains the plain model's parameters, whose checkpoint loads strictly."""
    cfg = tiny_cfg(enc_layers=1, dec_layers=1, num_queries=4)
    model = noisy_model(cfg)
    eager, before = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    criterion = build_criterion(cfg)
    features, mask, targets = synthetic_batch(2, 32, cfg.hidden_dim, torch.device("cpu"))
    steps = []
    for net, runs in ((eager, eager), (model, compiled(model, True, backend="aot_eager"))):
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # a step proportional to the gradient
        runs.train()
        steps.append(train_step(runs, criterion, optimizer, features, mask, targets, clip_max_norm=0.1))
    assert steps[1].total == pytest.approx(steps[0].total, rel=1e-6)
    assert not torch.equal(model.state_dict()["bbox_embed.layers.2.weight"], before["bbox_embed.layers.2.weight"])
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        assert (p.grad is None) == (q.grad is None), name  # no zero gradients where eager has none
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name  # the plain model's parameters were trained

    path = save_state_dict(model, tmp_path / "last_compiled.pkl")
    assert list(read_state_dict(path)) == list(eager.state_dict())  # the original names, no _orig_mod.
    plain = build_model(cfg)
    load_model_weights(plain, path)  # strict
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values()))


@pytest.mark.slow
@pytest.mark.compile
def test_compiled_run_resumes_uncompiled_and_back(tiny_config, tmp_path):  # noqa: F811
    def train(*extra):
        # one layer each keeps the compilation short; 25 inference windows in batches of 5: no short batch
        return train_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root",
                                str(tmp_path), "--enc_layers", "1", "--dec_layers", "1", "--batch_size", "5",
                                *extra])

    state = tmp_path / "ckpt" / "Synthetic" / "state_tiny.pt"
    train("--compile", "--epochs", "1")
    assert torch.load(state, weights_only=True)["config"]["compile"] is True
    cfg = parse_config(["--cfg_path", str(tiny_config), "--enc_layers", "1", "--dec_layers", "1"])
    for name in ("best_tiny.pkl", "last_tiny.pkl"):  # the compiled run's own checkpoints: plain, strict
        assert not any(key.startswith("_orig_mod.") for key in read_state_dict(tmp_path / "ckpt" / "Synthetic" / name))
        load_model_weights(build_model(cfg), tmp_path / "ckpt" / "Synthetic" / name)
    train("--resume", str(state), "--epochs", "2")  # compiled -> eager
    assert torch.load(state, weights_only=True)["epoch"] == 1
    result = train("--resume", str(state), "--epochs", "3", "--compile")  # eager -> compiled
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] == 2 and saved["config"]["compile"] is True and result["best"] is not None
    for name in ("best_tiny.pkl", "last_tiny.pkl"):
        load_model_weights(build_model(cfg), tmp_path / "ckpt" / "Synthetic" / name)
    log = (tmp_path / "logs" / "Synthetic" / "tiny.log").read_text()
    assert "--compile True -> False" in log and "--compile False -> True" in log


def test_compiled_forward_under_autocast_matches_eager_autocast():
    """--compile with --amp: the autocast region encloses the compiled forward (aot_eager, as above)."""
    cfg = tiny_cfg(enc_layers=1, dec_layers=1, num_queries=4)
    model = noisy_model(cfg).eval()
    features, mask, _ = synthetic_batch(2, 32, cfg.hidden_dim, torch.device("cpu"))
    runs = compiled(model, True, backend="aot_eager")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager, traced = model(features, mask), runs(features, mask)
    assert eager["pred_boxes"].dtype == traced["pred_boxes"].dtype
    assert eager["actionness_logits"].dtype == torch.bfloat16  # the forward did run under autocast
    for key in ("pred_boxes", "actionness_logits", "salient_logits"):
        assert torch.allclose(traced[key].float(), eager[key].float(), rtol=2e-2, atol=2e-2), key

"""The fused AdamW of utils/engine/optim.py is the original's per-tensor AdamW, only faster; resuming keeps it."""
from __future__ import annotations

import copy

import torch

from utils.config import default_config
from utils.engine.optim import build_optimizer, load_optimizer_state


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, count: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        inputs = torch.randn(8, 6, generator=generator, dtype=torch.float64)
        optimizer.zero_grad(set_to_none=True)
        model(inputs).pow(2).sum().backward()
        optimizer.step()


def _loop_adamw(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """The original's optimizer: torch's AdamW with its CPU default, the per-tensor loop."""
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}, {"params": [], "lr": cfg.lr_backbone}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)


def test_fused_adamw_follows_the_per_tensor_loop():
    cfg = default_config(lr=1e-2, weight_decay=1e-2)
    fused_model, loop_model = _model(), _model()
    fused = build_optimizer(fused_model, cfg)
    assert all(group["fused"] for group in fused.param_groups)
    _steps(fused_model, fused, 5, seed=1)
    _steps(loop_model, _loop_adamw(loop_model, cfg), 5, seed=1)
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)
    assert not torch.equal(fused_model[0].weight, _model()[0].weight)  # the steps moved the weights


def test_a_state_saved_by_the_loop_resumes_fused_and_on_the_same_path():
    cfg = default_config(lr=1e-2, weight_decay=1e-2)
    model = _model()
    loop = _loop_adamw(model, cfg)
    _steps(model, loop, 3, seed=2)
    saved_model, saved_state = copy.deepcopy(model), copy.deepcopy(loop.state_dict())
    _steps(model, loop, 3, seed=3)  # the uninterrupted run

    resumed = build_optimizer(saved_model, cfg)
    load_optimizer_state(resumed, saved_state)
    assert all(group["fused"] for group in resumed.param_groups)
    _steps(saved_model, resumed, 3, seed=3)
    for a, b in zip(saved_model.parameters(), model.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)

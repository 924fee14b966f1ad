"""Optimizer and learning-rate schedule of a training run, as the original's main.py builds them (SPEC §9.1).

Used by main.py and by scripts/check_reference.py, which replays the original's training trajectories
(fixtures T) through exactly this code.
"""
from __future__ import annotations

import torch


def parameter_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """The original's two groups, in its order: names without "backbone" at `--lr` (this includes the
    gradient-less `logit_scale` and `class_embed`; AdamW skips parameters without a gradient), then names
    with "backbone" at `--lr_backbone`."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if "backbone" not in n], "lr": cfg.lr},
            {"params": [p for n, p in named if "backbone" in n], "lr": cfg.lr_backbone}]


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.999, eps 1e-8) with `--weight_decay` on both groups.

    `fused=True`: torch's one-kernel AdamW (CPU and CUDA) instead of its per-tensor loop (the CPU default, and
    the original's); the same update formula, about 5x faster on the headline model's 230 tensors on CPU, and
    the replayed trajectories of the original (check_reference.py, fixtures T) stay within 1e-12.
    """
    return torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.StepLR:
    """StepLR: the learning rates drop 10x every `--lr_drop` epochs; stepped once after every epoch."""
    return torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_drop, gamma=0.1)


def build_optimization(model: torch.nn.Module, cfg):
    """-> (optimizer, scheduler) of a run."""
    optimizer = build_optimizer(model, cfg)
    return optimizer, build_scheduler(optimizer, cfg)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)`, keeping this build's fused kernel: torch restores the saved groups'
    `fused` setting, so a state saved by the per-tensor loop (before the fused AdamW) would resume on it."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, was_fused in zip(optimizer.param_groups, fused):
        if was_fused and not group.get("fused"):
            group["fused"] = True
            for param in group["params"]:  # the fused kernel keeps its step counts beside the parameters
                entry = optimizer.state.get(param, {})
                if "step" in entry:
                    entry["step"] = entry["step"].to(param.device, torch.float32)

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
    """AdamW (betas 0.9/0.999, eps 1e-8) with `--weight_decay` on both groups."""
    return torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.StepLR:
    """StepLR: the learning rates drop 10x every `--lr_drop` epochs; stepped once after every epoch."""
    return torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_drop, gamma=0.1)


def build_optimization(model: torch.nn.Module, cfg):
    """-> (optimizer, scheduler) of a run."""
    optimizer = build_optimizer(model, cfg)
    return optimizer, build_scheduler(optimizer, cfg)

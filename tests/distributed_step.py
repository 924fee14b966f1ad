"""One optimisation step on one rank or on each of 2 gloo ranks (tests/test_distributed.py): a module of its
own so that the spawned ranks import only what the step needs."""
from __future__ import annotations

import torch
import torch.distributed as dist

from models.build import build_criterion, build_model
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from utils.config import default_config
from utils.distributed import data_parallel, gather_in_order, reduce_num_boxes, shard_bounds
from utils.engine.loop import train_step

TINY = dict(hidden_dim=16, nheads=2, dim_feedforward=32, enc_layers=1, dec_layers=2, num_queries=6, dropout=0.0)
BATCH, LENGTH, CHANNELS, WORLD = 16, 12, 16, 2


def tiny_model_and_criterion():
    cfg = default_config(**{**HEADLINE_MODEL_FLAGS["thumos14"], **TINY})
    torch.manual_seed(0)
    model = build_model(cfg).double()
    with torch.no_grad():  # so that zero-initialised layers take part in the comparison
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, build_criterion(cfg)


def global_batch():
    """16 windows of one length: padding to different lengths would change the salient loss's mean over
    time (it averages over the padded length T), so a split batch would be padded differently from the
    whole. Items 0-7 (rank 0's half) have one instance, items 8-15 two, so that the ranks' box counts
    differ and a missing all-reduce of num_boxes shows."""
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(BATCH, LENGTH, CHANNELS, generator=gen, dtype=torch.float64)
    mask = torch.zeros(BATCH, LENGTH, dtype=torch.bool)
    targets = []
    for item in range(BATCH):
        count = 1 if item < BATCH // 2 else 2
        centers = torch.rand(count, generator=gen, dtype=torch.float64) * 0.6 + 0.2
        widths = torch.rand(count, generator=gen, dtype=torch.float64) * 0.2 + 0.05
        salient = torch.ones(count, LENGTH, dtype=torch.bool)
        for k in range(count):
            start = int((centers[k] - widths[k] / 2) * LENGTH)
            salient[k, start:start + max(1, int(widths[k] * LENGTH))] = False
        targets.append({"segments": torch.stack([centers, widths], 1), "labels": torch.zeros(count, dtype=torch.long),
                        "semantic_labels": torch.zeros(count, dtype=torch.long), "salient_mask": salient})
    return features, mask, targets


def one_step(model, criterion, features, mask, targets):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # plain SGD: the update is the gradient itself
    step = train_step(model, criterion, optimizer, features, mask, targets, clip_max_norm=0.0)
    return step.losses | {"loss": step.total}


def rank_step(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model, criterion = tiny_model_and_criterion()
        criterion.reduce_num_boxes = reduce_num_boxes
        features, mask, targets = global_batch()
        start, end = shard_bounds(BATCH)
        losses = one_step(data_parallel(model, torch.device("cpu")), criterion, features[start:end], mask[start:end],
                          targets[start:end])
        shards = gather_in_order([(start, end)])
        if rank == 0:
            torch.save({"losses": losses, "params": model.state_dict(), "shards": shards}, out)
    finally:
        dist.destroy_process_group()

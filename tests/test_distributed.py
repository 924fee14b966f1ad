"""Data parallelism on CPU with gloo and 2 processes: N ranks x batch b are the optimisation of 1 rank x
batch N*b, and a 2-rank main.py run writes one set of outputs whose metrics a single process reproduces."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import test as test_main
from models.build import build_criterion, build_model
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from tests.conftest import REPO_ROOT
from tests.test_end_to_end import tiny_config  # noqa: F401  (the fixture: a tiny synthetic dataset and model)
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


def _rank_step(rank: int, init_file: str, out: str) -> None:
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


def test_two_ranks_of_batch_8_step_as_one_rank_of_batch_16(tmp_path):
    """float64, so that the only differences are the order of summation: 1e-10 relative is far below what a
    missing num_boxes reduction (here a factor 4/3 on one half) or a wrong gradient average would give."""
    torch.set_num_threads(1)
    out = tmp_path / "ranks.pt"
    mp.spawn(_rank_step, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    ranks = torch.load(out, weights_only=False)
    assert ranks["shards"] == [(0, 8), (8, 16)]

    model, criterion = tiny_model_and_criterion()
    features, mask, targets = global_batch()
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    losses = one_step(model, criterion, features, mask, targets)
    assert set(ranks["losses"]) == set(losses) and "loss_salient" in losses
    for key, value in losses.items():
        assert ranks["losses"][key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    moved = 0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks["params"][key], value, rtol=1e-10, atol=1e-12, msg=key)
        moved += int(not torch.equal(value, initial[key]))
    assert moved > 10  # the step did update the parameters being compared


def test_a_single_process_reduces_and_gathers_nothing():
    assert reduce_num_boxes(0.0) == 0.0 and gather_in_order([3, 1]) == [3, 1] and shard_bounds(5) == (0, 5)
    model = torch.nn.Linear(2, 2)
    assert data_parallel(model, torch.device("cpu")) is model


def _torchrun_main(*flags: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(REPO_ROOT / "main.py"), *flags], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_two_rank_main_py_run_and_resume_write_one_set_of_outputs_that_test_py_reproduces(
        tiny_config, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    flags = ["--cfg_path", str(tiny_config), "--model_name", "ddp", "--output_root", str(out)]
    _torchrun_main(*flags, "--epochs", "1", "--batch_size", "4")
    state = out / "ckpt/Synthetic/state_ddp.pt"
    _torchrun_main(*flags, "--epochs", "2", "--batch_size", "4", "--resume", str(state))  # every rank loads it
    assert torch.load(state, weights_only=False)["epoch"] == 1

    log = (out / "logs/Synthetic/ddp.log").read_text()
    assert "per process x 2 process(es) = global batch 8" in log
    assert "resumed from" in log and log.count("epoch 1 train losses") == 1  # one writer: rank 0
    assert sorted(p.name for p in (out / "logs/Synthetic").iterdir()) == [".ddp.lock", "ddp.log", "ddp_config.yaml"]
    assert len((out / "results/excel/Synthetic/ddp_results.csv").read_text().splitlines()) == 2
    assert len(list((out / "runs/Synthetic/ddp").glob("events.out.tfevents.*"))) == 2  # one per launch
    assert sorted(p.name for p in (out / "ckpt/Synthetic").iterdir()) == ["best_ddp.pkl", "last_ddp.pkl",
                                                                          "state_ddp.pt"]
    best = json.loads((out / "results/Synthetic/ddp/best_metrics.json").read_text())

    # one process, every item, the selected checkpoint: what the 2 ranks' gathered detections scored
    metrics = test_main.main(flags)
    assert metrics["average_mAP"] == pytest.approx(best["average_mAP"], abs=1e-9)
    assert metrics["mAP_per_tiou"] == pytest.approx(best["mAP_per_tiou"], abs=1e-9)

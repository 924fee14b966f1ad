"""Data parallelism on CPU with gloo and 2 processes: N ranks x batch b are the optimisation of 1 rank x
batch N*b, and a 2-rank main.py run writes one set of outputs whose metrics a single process reproduces."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import test as test_main
from tests.conftest import REPO_ROOT
from tests.distributed_step import WORLD, global_batch, one_step, rank_step, tiny_model_and_criterion
from tests.test_end_to_end import tiny_config  # noqa: F401  (the fixture: a tiny synthetic dataset and model)
from utils.distributed import data_parallel, gather_in_order, reduce_num_boxes, shard_bounds
from utils.engine.paths import RunLock, RunPaths


def test_two_ranks_of_batch_8_step_as_one_rank_of_batch_16(tmp_path):
    """float64, so that the only differences are the order of summation: 1e-10 relative is far below what a
    missing num_boxes reduction (here a factor 4/3 on one half) or a wrong gradient average would give."""
    torch.set_num_threads(1)
    out = tmp_path / "ranks.pt"
    mp.spawn(rank_step, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
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


def _torchrun_main(*flags: str, expect_success: bool = True) -> subprocess.CompletedProcess:
    """main.py under torchrun with 2 CPU processes (the timeout turns a hang into a failure)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(REPO_ROOT / "main.py"), *flags], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert (run.returncode == 0) == expect_success, run.stderr[-3000:]
    return run


@pytest.mark.slow
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


def test_test_py_refuses_several_torchrun_processes(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert test_main.run_cli(test_main.main, ["--cfg_path", "config/demo.yaml"]) == 1
    assert "test.py runs as one process, not 2 under torchrun" in capsys.readouterr().err


@pytest.mark.slow
def test_an_error_of_rank_0_alone_stops_every_rank_with_its_line(tiny_config, tmp_path):  # noqa: F811
    """The lock is taken by rank 0 only: held elsewhere, rank 0 fails there and rank 1, which passed every
    check, stops with the same line instead of waiting for rank 0 forever."""
    out = tmp_path / "out"
    lock = RunLock(RunPaths(out, "Synthetic", "held").lock).acquire("held")
    try:
        run = _torchrun_main("--cfg_path", str(tiny_config), "--model_name", "held", "--output_root", str(out),
                             "--epochs", "1", expect_success=False)
    finally:
        lock.release()
    line = "error: --model_name held: a run of this name is already running"
    assert run.stderr.count(line) == 2, run.stderr[-3000:]
    assert not (out / "ckpt").exists() and not (out / "logs/Synthetic/held.log").exists()

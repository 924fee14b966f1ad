"""scripts/bench_train.py --quick runs end to end and prints every measurement and ratio (no timing asserted)."""
from __future__ import annotations

import re

import pytest

from scripts import bench_train

pytestmark = pytest.mark.slow


def test_quick_run_prints_every_ratio(tmp_path, capsys):
    assert bench_train.main(["--quick", "--work_dir", str(tmp_path), "--num_workers", "0"]) == 0
    out = capsys.readouterr().out
    number = r"\d+\.\d+"
    for line in (r"CPU: .+; features .*; torch kernels \w+",
                 rf"matmul 256x256  float32: {number} GFLOP/s",
                 rf"model-only iteration .*: {number} s/iteration, {number} GFLOP, {number} GFLOP/s",
                 rf"its \d+ matrix products replayed alone: {number} s, {number} GFLOP, {number} GFLOP/s",
                 rf"matmul 256x256  float32 again at the end: {number} GFLOP/s \([+-]\d+% against the start",
                 rf"main.py training epoch: {number} s for \d+ iterations, {number} s/iteration \(first {number} s",
                 rf"main.py test pass: {number} s for \d+ batches \(forward-only {number} s\)",
                 rf"model-only GFLOP/s / matmul float32 GFLOP/s: {number} \(median of 2 iterations",
                 rf"its matrix products alone / matmul float32 GFLOP/s: {number}; model-only iteration / its "
                 rf"matrix products alone: {number}",
                 rf"main.py training iteration / model-only iteration: {number} \(after the first: {number}\)",
                 rf"main.py test pass / forward-only: {number}"):
        assert re.search(line, out), f"missing line {line!r} in:\n{out}"
    assert "epoch 0 train losses" in (tmp_path / "main_py_console.txt").read_text()
    assert bench_train.train_main.train_one_epoch.__module__ == "utils.engine.loop"

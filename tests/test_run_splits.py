"""scripts/run_splits.py: split-id ranges, resumability, aggregation arithmetic and the written table."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from scripts import run_splits
from scripts.run_splits import aggregate, csv_table, markdown_table, parse_split_ids, run_one_split


def _metrics(maps, ar=(0.1, 0.2, 0.3)):
    return {"iou_range": [0.3, 0.4, 0.5, 0.6, 0.7], "mAP_per_tiou": list(maps),
            "average_mAP": float(np.mean(maps)), "AR@10": ar[0], "AR@25": ar[1], "AR@40": ar[2]}


@pytest.mark.parametrize("text,expected", [
    ("0-9", list(range(10))), ("3", [3]), ("0,2,5-6", [0, 2, 5, 6]), ("5-6,0,5", [0, 5, 6]), ("9-9", [9]),
])
def test_split_id_ranges(text, expected):
    assert parse_split_ids(text) == expected


@pytest.mark.parametrize("text", ["", "10", "-1", "a-b", "5-2", "0-10"])
def test_invalid_split_ids_are_clear_errors(text):
    with pytest.raises(argparse.ArgumentTypeError, match="split"):
        parse_split_ids(text)


def test_aggregation_arithmetic():
    table = aggregate({0: _metrics([0.5, 0.4, 0.3, 0.2, 0.1], (0.1, 0.2, 0.3)),
                       1: _metrics([0.7, 0.6, 0.5, 0.4, 0.3], (0.3, 0.4, 0.5))})
    assert table["columns"][:2] == ["mAP@0.30", "mAP@0.40"] and table["columns"][5] == "avg mAP"
    assert table["rows"][0][5] == pytest.approx(30.0) and table["rows"][1][5] == pytest.approx(50.0)
    assert table["mean"][0] == pytest.approx(60.0) and table["std"][0] == pytest.approx(10.0)
    assert table["mean"][5] == pytest.approx(40.0) and table["std"][5] == pytest.approx(10.0)
    assert table["mean"][6] == pytest.approx(20.0)  # AR@10 in %
    markdown, csv = markdown_table(table, "t"), csv_table(table)
    assert "| mean | 60.00 | 50.00 |" in markdown and "| std | 10.00 |" in markdown
    assert csv.splitlines()[-2].startswith("mean,60.0000")


def test_aggregation_rejects_mismatched_thresholds():
    other = _metrics([0.5] * 5)
    other["iou_range"] = [0.5, 0.55, 0.6, 0.65, 0.7]
    with pytest.raises(ValueError, match="tIoU"):
        aggregate({0: _metrics([0.5] * 5), 1: other})


def test_finished_split_is_not_rerun(tmp_path, monkeypatch):
    done = tmp_path / "test_metrics.json"
    done.write_text(json.dumps(_metrics([0.1] * 5)))

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished split must not be run again")

    monkeypatch.setattr(run_splits.subprocess, "run", forbidden)
    assert run_one_split(0, [], "m", done, tmp_path / "logs") == done


def test_failed_split_names_its_log(tmp_path, monkeypatch):
    class Failed:
        returncode = 3

    monkeypatch.setattr(run_splits.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_one_split(1, [], "m", tmp_path / "missing.json", tmp_path / "logs")


def test_main_resumes_and_writes_table_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_run(split_id, passthrough, model_name, done_file, log_dir, state_file=None):
        calls.append(split_id)
        done_file.parent.mkdir(parents=True, exist_ok=True)
        done_file.write_text(json.dumps(_metrics([0.1 * (split_id + 1)] * 5)))
        return done_file

    monkeypatch.setattr(run_splits, "run_one_split", fake_run)
    argv = ["--split_ids", "0-2", "--model_name", "m", "--dataset_name", "Synthetic", "--device", "cpu"]
    table = run_splits.main(argv)
    assert calls == [0, 1, 2] and table["mean"][5] == pytest.approx(20.0)
    out = tmp_path / "results" / "Synthetic" / "m_splits"
    assert (out / "table.md").read_text().count("\n| ") >= 5
    assert (out / "average_mAP.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the real runner skips finished splits: nothing is re-run when every metrics file exists
    monkeypatch.setattr(run_splits, "run_one_split", run_splits.__dict__["run_one_split"])
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_splits.subprocess, "run", lambda *a, **k: pytest.fail("re-ran a finished split"))
    assert run_splits.main(argv)["rows"].keys() == {0, 1, 2}


def _recording_run(calls, done_file):
    """A stand-in for subprocess.run that records the command and lets test.py 'write' the metrics file."""
    class Ok:
        returncode = 0

    def run(command, **kwargs):
        calls.append(command)
        if command[1].endswith("test.py"):
            done_file.parent.mkdir(parents=True, exist_ok=True)
            done_file.write_text(json.dumps(_metrics([0.2] * 5)))
        return Ok()
    return run


@pytest.mark.parametrize("has_state", [False, True])
def test_interrupted_split_resumes_its_training(tmp_path, monkeypatch, has_state):
    calls, done = [], tmp_path / "results" / "test_metrics.json"
    state = tmp_path / "ckpt" / "state_m_split4.pt"
    if has_state:
        state.parent.mkdir(parents=True)
        state.write_bytes(b"x")
    monkeypatch.setattr(run_splits.subprocess, "run", _recording_run(calls, done))
    run_one_split(4, ["--cfg_path", "c.yaml"], "m", done, tmp_path / "logs", state)
    train, test = calls
    assert train[1].endswith("main.py") and test[1].endswith("test.py")
    assert train[2:8] == ["--cfg_path", "c.yaml", "--split_id", "4", "--model_name", "m_split4"]
    assert ("--resume" in train) == has_state and "--resume" not in test
    if has_state:
        assert train[train.index("--resume") + 1] == str(state)


def test_main_passes_each_splits_state_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_run(split_id, passthrough, model_name, done_file, log_dir, state_file=None):
        seen[split_id] = state_file
        done_file.parent.mkdir(parents=True, exist_ok=True)
        done_file.write_text(json.dumps(_metrics([0.1] * 5)))
        return done_file

    monkeypatch.setattr(run_splits, "run_one_split", fake_run)
    run_splits.main(["--split_ids", "2,5", "--model_name", "m", "--dataset_name", "Synthetic", "--device", "cpu",
                     "--output_root", "out", "--jobs", "2"])
    assert seen == {i: Path("out") / f"ckpt/Synthetic/state_m_split{i}.pt" for i in (2, 5)}


def test_one_crashed_split_still_gives_the_table_of_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def fake_run(split_id, passthrough, model_name, done_file, log_dir, state_file=None):
        if split_id == 1:
            raise OSError("disk full")
        done_file.parent.mkdir(parents=True, exist_ok=True)
        done_file.write_text(json.dumps(_metrics([0.1] * 5)))
        return done_file

    monkeypatch.setattr(run_splits, "run_one_split", fake_run)
    with pytest.raises(SystemExit, match="1: OSError: disk full"):
        run_splits.main(["--split_ids", "0-1", "--model_name", "m", "--dataset_name", "Synthetic", "--device",
                         "cpu"])
    assert (tmp_path / "results/Synthetic/m_splits/table.csv").read_text().splitlines()[1].startswith("0,")

"""scripts/run_splits.py: split-id ranges, resumability, aggregation arithmetic and the written table."""
from __future__ import annotations

import argparse
import json
import sys

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


ARGV = ["--model_name", "m", "--dataset_name", "Synthetic", "--device", "cpu", "--epochs", "3"]


def _split(tmp_path, split_id=0, argv=ARGV):
    paths = run_splits.split_paths(str(tmp_path), "Synthetic", "m", split_id)
    return paths, run_splits.split_config(argv, "m", split_id)


def _mark_finished(paths, requested, maps=(0.1,) * 5):
    paths.split_done.parent.mkdir(parents=True, exist_ok=True)
    paths.split_done.write_text(json.dumps({"config": run_splits.config_to_dict(requested),
                                            "metrics": _metrics(list(maps))}))


def test_finished_split_is_not_rerun(tmp_path, monkeypatch):
    paths, requested = _split(tmp_path)
    _mark_finished(paths, requested)
    monkeypatch.setattr(run_splits.subprocess, "Popen", lambda *a, **k: pytest.fail("re-ran a finished split"))
    assert run_one_split(0, ARGV, "m", paths, tmp_path / "logs", requested)["average_mAP"] == pytest.approx(0.1)


def test_split_finished_with_other_flags_names_them(tmp_path):
    paths, requested = _split(tmp_path)
    _mark_finished(paths, requested)
    _, other = _split(tmp_path, argv=ARGV + ["--lr", "0.001", "--num_queries", "7"])
    with pytest.raises(ValueError, match=r"--num_queries 15 -> 7, --lr 0.0001 -> 0.001"):
        run_splits.finished_metrics(0, paths, other)


def test_test_py_metrics_alone_do_not_mark_a_split_finished(tmp_path, monkeypatch):
    """test.py --ckpt writes test_metrics.json; only run_splits' own marker means 'finished'."""
    paths, requested = _split(tmp_path)
    paths.test_metrics.parent.mkdir(parents=True)
    paths.test_metrics.write_text(json.dumps(_metrics([0.9] * 5)))
    calls = []
    monkeypatch.setattr(run_splits, "_run_logged", _recording_run(calls, paths.test_metrics))
    metrics = run_one_split(0, ARGV, "m", paths, tmp_path / "logs", requested)
    assert [c[1].rsplit("/", 1)[-1] for c in calls] == ["main.py", "test.py"]
    assert json.loads(paths.split_done.read_text())["metrics"] == metrics


def test_failed_split_names_its_log(tmp_path, monkeypatch):
    paths, requested = _split(tmp_path, 1)
    monkeypatch.setattr(run_splits, "_run_logged", lambda *a, **k: 3)
    with pytest.raises(RuntimeError, match="exit code 3"):
        run_one_split(1, ARGV, "m", paths, tmp_path / "logs", requested)


def test_progress_lines_per_epoch(tmp_path, capsys):
    log = tmp_path / "x.out"
    code = "print('2026 INFO epoch 0 train losses: loss 1'); print('2026 INFO epoch 1 train losses: loss 1')"
    assert run_splits._run_logged([sys.executable, "-c", code], log, 4, 2) == 0
    out = capsys.readouterr().out
    assert "split 4: epoch 1/2 trained" in out and "split 4: epoch 2/2 trained" in out
    assert "epoch 1 train losses" in log.read_text()


def test_main_resumes_and_writes_table_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_run(split_id, passthrough, model_name, paths, log_dir, requested):
        calls.append(split_id)
        _mark_finished(paths, requested, [0.1 * (split_id + 1)] * 5)
        return _metrics([0.1 * (split_id + 1)] * 5)

    monkeypatch.setattr(run_splits, "run_one_split", fake_run)
    argv = ["--split_ids", "0-2", *ARGV]
    table = run_splits.main(argv)
    assert calls == [0, 1, 2] and table["mean"][5] == pytest.approx(20.0)
    out = tmp_path / "results" / "Synthetic" / "m_splits"
    assert (out / "table.md").read_text().count("\n| ") >= 5
    assert (out / "average_mAP.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the real runner reuses finished splits: nothing is re-run when every split is marked finished
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_splits.subprocess, "Popen", lambda *a, **k: pytest.fail("re-ran a finished split"))
    assert run_splits.main(argv)["rows"].keys() == {0, 1, 2}
    # the same command with another flag stops before running anything, naming the flag
    with pytest.raises(ValueError, match="--seed"):
        run_splits.main(argv + ["--seed", "5"])


def _recording_run(calls, done_file):
    """A stand-in for _run_logged that records the command and lets test.py 'write' the metrics file."""
    def run(command, log_path, split_id, epochs):
        calls.append(command)
        if command[1].endswith("test.py"):
            done_file.parent.mkdir(parents=True, exist_ok=True)
            done_file.write_text(json.dumps(_metrics([0.2] * 5)))
        return 0
    return run


@pytest.mark.parametrize("has_state", [False, True])
def test_interrupted_split_resumes_its_training(tmp_path, monkeypatch, has_state):
    calls = []
    paths, requested = _split(tmp_path, 4)
    if has_state:
        monkeypatch.setattr(run_splits, "load_training_state", lambda path: {"epoch": 0})
        paths.state.parent.mkdir(parents=True)
        paths.state.write_bytes(b"x")
    monkeypatch.setattr(run_splits, "_run_logged", _recording_run(calls, paths.test_metrics))
    run_one_split(4, ["--cfg_path", "c.yaml"], "m", paths, tmp_path / "logs", requested)
    train, test = calls
    assert train[1].endswith("main.py") and test[1].endswith("test.py")
    assert train[2:8] == ["--cfg_path", "c.yaml", "--split_id", "4", "--model_name", "m_split4"]
    assert ("--resume" in train) == has_state and "--resume" not in test
    if has_state:
        assert train[train.index("--resume") + 1] == str(paths.state)


def test_split_trained_to_the_end_is_only_tested(tmp_path, monkeypatch):
    calls = []
    paths, requested = _split(tmp_path, 2)
    paths.state.parent.mkdir(parents=True)
    paths.state.write_bytes(b"x")
    saved = {"epoch": 2, "config": run_splits.config_to_dict(requested)}
    monkeypatch.setattr(run_splits, "load_training_state", lambda path: saved)
    monkeypatch.setattr(run_splits, "_run_logged", _recording_run(calls, paths.test_metrics))
    run_one_split(2, ARGV, "m", paths, tmp_path / "logs", requested)
    assert [c[1].rsplit("/", 1)[-1] for c in calls] == ["test.py"]
    saved["config"] = {**saved["config"], "lr": 0.5}
    paths.split_done.unlink()
    with pytest.raises(ValueError, match="--lr 0.5 -> 0.0001"):
        run_one_split(2, ARGV, "m", paths, tmp_path / "logs", requested)


def test_one_crashed_split_still_gives_the_table_of_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def fake_run(split_id, passthrough, model_name, paths, log_dir, requested):
        if split_id == 1:
            raise OSError("disk full")
        return _metrics([0.1] * 5)

    monkeypatch.setattr(run_splits, "run_one_split", fake_run)
    with pytest.raises(SystemExit, match="1: OSError: disk full"):
        run_splits.main(["--split_ids", "0-1", *ARGV])
    assert (tmp_path / "results/Synthetic/m_splits/table.csv").read_text().splitlines()[1].startswith("0,")

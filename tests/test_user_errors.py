"""Bad inputs and faults through the real command lines: one `error: ...` line, exit status 1, no traceback,
and a finished run beside them left byte-identical. Plus the run-safety cases: same-name re-run,
--overwrite, concurrent runs (lock), --resume with changed flags, a kill between the state and best_ writes.

Most cases run `main.py`/`test.py`/`evaluate.py` in-process through `run_cli` (what `python main.py` runs),
a few as real subprocesses to prove the exit path.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import main as train_main
import test as test_main
from scripts import evaluate as evaluate_script
from tests.conftest import REPO_ROOT
from utils import io as io_utils
from utils.cli import run_cli
from utils.engine.paths import RunLock, RunPaths
from utils.engine.synthetic import ensure_synthetic_dataset

pytestmark = pytest.mark.slow
SIZES = dict(num_classes=8, num_train_videos=12, num_test_videos=8, min_length=120, max_length=200, feature_dim=32)
TINY = dict(hidden_dim=32, dim_feedforward=64, nheads=4, num_queries=10, enc_layers=1, dec_layers=1, epochs=2,
            batch_size=8, lr=5e-4, num_workers=0, device="cpu", seed=7, text_cache_dir="")
DATA_KEYS = ("anno_file_path", "feature_info_path", "description_file_path", "feature_path", "split_root",
             "text_embeddings")


def write_config(path: Path, data: Path, **changes) -> Path:
    """demo.yaml pointed at the dataset under `data`, with the tiny model."""
    values = yaml.safe_load((REPO_ROOT / "config" / "demo.yaml").read_text())
    for key in DATA_KEYS:
        values[key] = str(data / Path(values[key]).relative_to("data/Synthetic"))
    values.update(TINY, **changes)
    path.write_text(yaml.safe_dump(values))
    return path


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class Run:
    """The module's finished run: dataset, config, output root; `fin` trained for 2 epochs."""

    def __init__(self, root: Path):
        self.root = root
        self.data = ensure_synthetic_dataset(root / "Synthetic", seed=1, **SIZES)
        self.cfg = write_config(root / "tiny.yaml", self.data)
        self.out = root / "out"
        self.paths = RunPaths(self.out, "Synthetic", "fin")

    def args(self, *extra, name="fin", out=None):
        return ["--cfg_path", str(self.cfg), "--model_name", name, "--output_root", str(out or self.out), *extra]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    run = Run(tmp_path_factory.mktemp("user_errors"))
    train_main.main(run.args("--save_result"))
    return run


def one_error_line(capsys, status) -> str:
    captured = capsys.readouterr()
    errors = [line for line in re.split(r"[\r\n]", captured.err) if line.startswith("error:")]
    assert status == 1, captured.err[-2000:]
    assert len(errors) == 1 and captured.err.rstrip().endswith(errors[0]), captured.err[-2000:]
    assert "Traceback" not in captured.err + captured.out
    return errors[0]


# ------------------------------------------------------------------------------------- data corruptions

def corrupt_copy(run: Run, tmp_path: Path, edit) -> Path:
    """A copy of the dataset changed by `edit(root)`, and a config pointing at it."""
    data = tmp_path / "data"
    shutil.copytree(run.data, data)
    edit(data)
    return write_config(tmp_path / "bad.yaml", data)


def _first_feature(root: Path) -> Path:
    return sorted((root / "features").glob("syn_val_*.npy"))[0]


def _truncate_npy(root):
    path = _first_feature(root)
    path.write_bytes(path.read_bytes()[:200])


def _nan_features(root):
    path = _first_feature(root)
    array = np.load(path)
    array[3, 1] = np.nan
    np.save(path, array)


def _text_npy(root):
    _first_feature(root).write_text("not a numpy file\n")


def _edit_json(name, change):
    def edit(root):
        path = root / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _reverse_segment(data):
    video = next(v for v in data["database"].values() if v["subset"] == "val" and v["annotations"])
    start, end = video["annotations"][0]["segment"]
    video["annotations"][0]["segment"] = [end, start]


def _empty_video(info):
    first = sorted(info)[0]
    info[first]["snippet_length"] = 0


def _unknown_class(root):
    path = root / "splits/train_75_test_25/THUMOS14/train/split_0.list"
    path.write_text(path.read_text() + "Moonwalking\n")


def _bad_json(root):
    (root / "Synthetic_annotations.json").write_text('{"database": {')


def _wide_features(root):
    path = _first_feature(root)
    np.save(path, np.zeros((np.load(path).shape[0], 48), np.float32))


DATA_CASES = {
    "truncated npy": (_truncate_npy, "syn_val_0000.npy"),
    "NaN features": (_nan_features, "NaN"),
    "non-numpy npy": (_text_npy, "syn_val_0000.npy"),
    "wrong feature width": (_wide_features, "syn_val_0000"),
    "segment end < start": (_edit_json("Synthetic_annotations.json", _reverse_segment), "ends"),
    "empty video": (_edit_json("CLIP/Synthetic_info_8frame.json", _empty_video), "snippet_length"),
    "unknown class in split list": (_unknown_class, "Moonwalking"),
    "bad annotation JSON": (_bad_json, "Synthetic_annotations.json"),
    "missing text embeddings": (lambda root: (root / "text_embeddings.npz").unlink(), "text_embeddings.npz"),
    "missing feature file": (lambda root: _first_feature(root).unlink(), "syn_val_0000.npy"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line(run, tmp_path, capsys, case):
    edit, named = DATA_CASES[case]
    cfg = corrupt_copy(run, tmp_path, edit)
    before = snapshot(run.out)
    status = run_cli(train_main.main, ["--cfg_path", str(cfg), "--model_name", "new", "--output_root",
                                       str(run.out)])
    line = one_error_line(capsys, status)
    assert named in line, line
    assert snapshot(run.out) == before


# ------------------------------------------------------------------------------- flags, files, checkpoints

def _files(tmp: Path) -> dict[str, Path]:
    """Bad files for the flag cases."""
    files = {}
    for name, text in {"unknown.yaml": "hidden_dimm: 32\n", "type.yaml": "batch_size: many\n",
                       "choice.yaml": "postprocess_type: best\n", "syntax.yaml": "lr: [1,\n", "empty.yaml": "",
                       "README.md": "# not a checkpoint\n"}.items():
        files[name] = tmp / name
        files[name].write_text(text)
    files["plain.pkl"] = tmp / "plain.pkl"
    files["plain.pkl"].write_bytes(pickle.dumps({"query_embed.weight": [1.0, 2.0]}))
    return files


def _truncated(run: Run, tmp: Path) -> Path:
    path = tmp / "truncated_state.pt"
    path.write_bytes(run.paths.state.read_bytes()[:4096])
    return path


# (program, argv builder, text the line must contain)
FLAG_CASES = {
    "same name re-run": ("main", lambda r, f: r.args(), "--resume"),
    "unknown YAML key": ("main", lambda r, f: r.args("--cfg_path", str(f["unknown.yaml"])), "hidden_dimm"),
    "wrong YAML type": ("main", lambda r, f: r.args("--cfg_path", str(f["type.yaml"])), "batch_size"),
    "bad YAML choice": ("main", lambda r, f: r.args("--cfg_path", str(f["choice.yaml"])), "postprocess_type"),
    "YAML syntax error": ("main", lambda r, f: r.args("--cfg_path", str(f["syntax.yaml"])), "syntax.yaml"),
    "empty YAML": ("main", lambda r, f: r.args("--cfg_path", str(f["empty.yaml"])), "empty.yaml"),
    "missing --cfg_path": ("main", lambda r, f: r.args("--cfg_path", str(r.root / "nope.yaml")), "nope.yaml"),
    "--device tpu": ("main", lambda r, f: r.args("--device", "tpu", name="new"), "--device tpu"),
    "--split_id 12": ("main", lambda r, f: r.args("--split_id", "12", name="new"), "--split_id 12"),
    "--split_id -1": ("main", lambda r, f: r.args("--split_id", "-1", name="new"), "--split_id -1"),
    "--batch_size 0": ("main", lambda r, f: r.args("--batch_size", "0", name="new"), "--batch_size 0"),
    "0 iterations": ("main", lambda r, f: r.args("--batch_size", "1000", name="new"), "0 iterations"),
    "--val_fraction 1.5": ("main", lambda r, f: r.args("--select_on", "val", "--val_fraction", "1.5", name="new"),
                           "--val_fraction"),
    "--lr -0.001": ("main", lambda r, f: r.args("--lr", "-0.001", name="new"), "--lr -0.001"),
    "--epochs 0": ("main", lambda r, f: r.args("--epochs", "0", name="new"), "test.py"),
    "unknown flag": ("main", lambda r, f: r.args("--hiden_dim", "3", name="new"), "--hiden_dim"),
    "non-integer flag": ("main", lambda r, f: r.args("--batch_size", "x", name="new"), "--batch_size"),
    "missing split list": ("main", lambda r, f: r.args("--split_root", str(r.root / "nosplits"), name="new"),
                           "nosplits"),
    "annotation typo (no generation)": ("main", lambda r, f: r.args(
        "--anno_file_path", str(r.data / "Synthetic_annotation.json"), name="new"), "Synthetic_annotation.json"),
    "dataset folder typo (no generation)": ("main", lambda r, f: r.args(
        "--anno_file_path", str(r.root / "Synthetic2" / "Synthetic_annotations.json"), name="new"), "Synthetic2"),
    "missing features folder": ("main", lambda r, f: r.args("--feature_path", str(r.root / "nofeat"), name="new"),
                                "nofeat"),
    "hidden_dim != features": ("main", lambda r, f: r.args("--hidden_dim", "16", name="new"), "--hidden_dim"),
    "output root is a file": ("main", lambda r, f: r.args(name="new", out=f["README.md"]), "--output_root"),
    "--resume truncated state": ("main", lambda r, f: r.args("--resume", str(_truncated(r, f["README.md"].parent)),
                                                             "--epochs", "3"), "truncated_state.pt"),
    "--resume README.md": ("main", lambda r, f: r.args("--resume", str(f["README.md"]), "--epochs", "3"),
                           "README.md"),
    "--resume plain pickle": ("main", lambda r, f: r.args("--resume", str(f["plain.pkl"]), "--epochs", "3"),
                              "plain.pkl"),
    "--resume missing": ("main", lambda r, f: r.args("--resume", str(r.root / "state_nope.pt"), "--epochs", "3"),
                         "state_nope.pt"),
    "--resume changed split and lr": ("main", lambda r, f: r.args("--resume", str(r.paths.state), "--epochs", "3",
                                                                  "--split_id", "1", "--lr", "0.01"),
                                      "--split_id 0 -> 1, --lr 0.0005 -> 0.01"),
    "--resume other num_queries": ("main", lambda r, f: r.args("--resume", str(r.paths.state), "--epochs", "3",
                                                               "--num_queries", "12"), "--num_queries 10 -> 12"),
    "--resume with --overwrite": ("main", lambda r, f: r.args("--resume", str(r.paths.state), "--overwrite"),
                                  "--overwrite"),
    "--resume a finished run": ("main", lambda r, f: r.args("--resume", str(r.paths.state)), "--epochs"),
    "test: missing checkpoint": ("test", lambda r, f: r.args(name="nope"), "best_nope.pkl"),
    "test: --ckpt README.md": ("test", lambda r, f: r.args("--ckpt", str(f["README.md"])), "README.md"),
    "test: --ckpt plain pickle": ("test", lambda r, f: r.args("--ckpt", str(f["plain.pkl"])), "plain.pkl"),
    "test: --ckpt truncated": ("test", lambda r, f: r.args("--ckpt", str(_truncated(r, f["README.md"].parent))),
                               "truncated_state.pt"),
    "test: --ckpt folder": ("test", lambda r, f: r.args("--ckpt", str(r.root)), "folder"),
    "test: other flags than the checkpoint": ("test", lambda r, f: r.args("--num_queries", "12"), "--num_queries"),
    "test: --device tpu": ("test", lambda r, f: r.args("--device", "tpu"), "--device tpu"),
    "test: --batch_size 0": ("test", lambda r, f: r.args("--batch_size", "0"), "--batch_size 0"),
}
PROGRAMS = {"main": train_main.main, "test": test_main.main}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flag_or_file_is_one_line(run, tmp_path, capsys, case):
    program, argv, named = FLAG_CASES[case]
    files = _files(tmp_path)
    before = snapshot(run.out)
    status = run_cli(PROGRAMS[program], argv(run, files))
    line = one_error_line(capsys, status)
    assert named in line, line
    assert snapshot(run.out) == before
    assert not (run.root / "Synthetic2").exists()  # no dataset generated for a path typo


def test_same_name_message_says_how_to_continue_or_replace(run, capsys):
    line = one_error_line(capsys, run_cli(train_main.main, run.args()))
    assert f"--resume {run.paths.state}" in line and "--overwrite" in line


def test_untrusted_checkpoint_runs_no_code(run, tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"query_embed.weight": Payload()}, evil)
    line = one_error_line(capsys, run_cli(test_main.main, run.args("--ckpt", str(evil))))
    assert "evil.pt" in line and "refused" in line and not marker.exists()


def test_results_csv_with_a_header_line_on_resume(run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    csv = RunPaths(out, "Synthetic", "fin").csv
    csv.write_text("epoch,mAP\n" + csv.read_text())
    before = snapshot(out)
    state = RunPaths(out, "Synthetic", "fin").state
    line = one_error_line(capsys, run_cli(train_main.main, run.args("--resume", str(state), "--epochs", "3",
                                                                    out=out)))
    assert str(csv) in line and "header" in line
    assert snapshot(out) == before


def test_disk_full_names_the_file(run, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_utils.os, "fsync", full)
    line = one_error_line(capsys, run_cli(train_main.main, run.args(name="new", out=tmp_path)))
    assert "no space left" in line and "new_config.yaml" in line
    assert not list(tmp_path.rglob("*.tmp"))


def test_read_only_output_root(run, tmp_path, capsys, monkeypatch):
    tmp_path.chmod(0o555)
    if os.geteuid() == 0:  # root may write anyway: let the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(io_utils.os, "access", lambda path, mode: False if Path(path) == tmp_path
                            else real_access(path, mode))
    try:
        line = one_error_line(capsys, run_cli(train_main.main, run.args(name="new", out=tmp_path / "out")))
    finally:
        tmp_path.chmod(0o755)
    assert "--output_root" in line and "permission denied" in line and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- evaluate.py

def _evaluate_args(run: Run, pred: Path, *extra) -> list[str]:
    return ["--gt", str(run.data / "Synthetic_annotations.json"), "--pred", str(pred), "--dataset", "Synthetic",
            "--split", "75", "--split_id", "0", "--split_root", str(run.data / "splits"), *extra]


def _detections(run: Run) -> Path:
    return run.paths.detections(1)


def test_evaluate_pred_folder(run, capsys):
    line = one_error_line(capsys, evaluate_script.cli(_evaluate_args(run, run.root)))
    assert str(run.root) in line and "folder" in line


def test_evaluate_out_folder(run, tmp_path, capsys):
    line = one_error_line(capsys, evaluate_script.cli(_evaluate_args(run, _detections(run), "--out", str(tmp_path))))
    assert "--out" in line and ".tmp" not in line


def test_evaluate_out_unwritable(run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_error_line(capsys, evaluate_script.cli(_evaluate_args(run, _detections(run), "--out",
                                                                     str(blocker / "m.json"))))
    assert "--out" in line


def test_evaluate_rejects_duplicate_video_keys(run, tmp_path, capsys):
    results = json.loads(_detections(run).read_text())["results"]
    video, detections = next(iter(results.items()))
    body = json.dumps(detections)
    text = '{"results": {' + f'"{video}": {body}, "{video}": {body}' + "}}"
    pred = tmp_path / "dup.json"
    pred.write_text(text)
    line = one_error_line(capsys, evaluate_script.cli(_evaluate_args(run, pred)))
    assert "dup.json" in line and video in line and "more than once" in line


# ------------------------------------------------------------------------------------- real subprocesses

@pytest.mark.parametrize("script,extra,named", [
    ("main.py", [], "--overwrite"),
    ("test.py", ["--ckpt", "README.md"], "README.md"),
])
def test_exit_path_as_a_subprocess(run, script, extra, named):
    before = snapshot(run.out)
    proc = subprocess.run([sys.executable, script, *run.args(*extra)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert snapshot(run.out) == before


def test_debug_shows_the_traceback(run, tmp_path):
    with pytest.raises(ValueError, match="--lr"):
        run_cli(train_main.main, run.args("--lr", "0", "--debug", name="new"))


# --------------------------------------------------------------------------------------- run safety

def test_outputs_follow_the_umask(run):
    expected_file, expected_dir = 0o666 & ~io_utils.current_umask(), 0o777 & ~io_utils.current_umask()
    for path in [run.paths.state, run.paths.best, run.paths.csv, run.paths.config, run.paths.best_metrics]:
        assert path.stat().st_mode & 0o777 == expected_file, path
    assert (run.data / "features").stat().st_mode & 0o777 == expected_dir


def test_overwrite_moves_the_old_run_aside_and_removes_stale_temps(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    before = snapshot(out)
    paths = RunPaths(out, "Synthetic", "fin")
    stale = paths.ckpt_dir / ".best_fin.pkl.x1y2.tmp"
    stale.write_bytes(b"half")
    train_main.main(run.args("--epochs", "1", "--overwrite", out=out))
    moved = next((out / "overwritten" / "Synthetic").iterdir())
    assert snapshot(moved) == {k: v for k, v in before.items() if not k.endswith(".lock")}  # whole, same layout
    assert len(paths.csv.read_text().splitlines()) == 1  # only the new run's row
    assert len(list(paths.tensorboard.glob("events.out.tfevents.*"))) == 1
    assert not stale.exists()
    log = paths.log.read_text()
    assert "removed 1 temporary file" in log and f"moved to {moved}" in log
    assert "outputs:" in log and f"best checkpoint: {paths.best}" in log  # where the files went (issue 14)


def test_log_gets_errors_and_dataset_warnings(run, tmp_path, monkeypatch, capsys):
    """An error after the run started: one line on the console, the traceback in the run log; the
    datasets' warnings (here: no description file) reach the log too."""
    def broken(*args, **kwargs):
        raise ValueError("loss exploded")

    monkeypatch.setattr(train_main, "train_one_epoch", broken)
    status = run_cli(train_main.main, run.args("--description_file_path", str(tmp_path / "none.json"),
                                               name="new", out=tmp_path))
    assert "loss exploded" in one_error_line(capsys, status)
    log = RunPaths(tmp_path, "Synthetic", "new").log.read_text()
    assert "Traceback" in log and "loss exploded" in log and "none.json" in log


def test_a_second_live_run_of_the_same_name_is_refused(run, tmp_path, capsys):
    """A real training process holds the lock; a second one of the same name stops at once."""
    paths = RunPaths(tmp_path, "Synthetic", "live")
    command = [sys.executable, "main.py", *run.args("--epochs", "50", name="live", out=tmp_path)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not paths.log.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, "the first run ended before the second started"
        log_before = paths.log.read_bytes()
        line = one_error_line(capsys, run_cli(train_main.main, run.args("--overwrite", name="live", out=tmp_path)))
        assert "already running" in line and str(paths.lock) in line
        assert paths.log.read_bytes().startswith(log_before)  # not truncated, not rewritten
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    RunLock(paths.lock).acquire("live").release()  # a killed run never blocks the next one


def test_kill_between_state_and_best_writes_is_repaired_by_resume(run, tmp_path, monkeypatch):
    """--select_on last makes every epoch the new best; the write of best_<model>.pkl at epoch 1 is 'killed'.
    best_metrics.json never describes other weights than best_<model>.pkl, and --resume ends exactly like an
    uninterrupted run."""
    reference = tmp_path / "reference"
    train_main.main(run.args("--epochs", "3", "--select_on", "last", name="k", out=reference))
    out = tmp_path / "killed"
    paths = RunPaths(out, "Synthetic", "k")
    real_save = train_main.atomic_torch_save
    calls = []

    def killed_on_second_best(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_save(obj, path)

    monkeypatch.setattr(train_main, "atomic_torch_save", killed_on_second_best)
    with pytest.raises(KeyboardInterrupt):
        train_main.main(run.args("--epochs", "3", "--select_on", "last", name="k", out=out))
    monkeypatch.undo()
    state = torch.load(paths.state, weights_only=True)
    assert state["epoch"] == 1 and state["best"]["epoch"] == 1
    assert not paths.best_metrics.exists()  # removed before best_k.pkl was (not) rewritten: no disagreement
    stale_best = torch.load(paths.best, weights_only=True)
    assert not all(torch.equal(stale_best[k], state["best_model"][k]) for k in stale_best)
    train_main.main(run.args("--epochs", "3", "--select_on", "last", "--resume", str(paths.state), name="k",
                             out=out))
    ref = RunPaths(reference, "Synthetic", "k")
    a, b = torch.load(ref.best, weights_only=True), torch.load(paths.best, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(paths.best_metrics.read_text()) == json.loads(ref.best_metrics.read_text())
    assert paths.csv.read_text() == ref.csv.read_text()


def test_resume_logs_and_continues_with_a_longer_epochs(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    paths = RunPaths(out, "Synthetic", "fin")
    log_before = paths.log.read_bytes()
    train_main.main(run.args("--resume", str(paths.state), "--epochs", "3", out=out))
    log = paths.log.read_bytes()
    assert log.startswith(log_before) and b"continuing at epoch 2 of 3" in log
    assert [row.split(",")[0] for row in paths.csv.read_text().splitlines()] == ["0", "1", "2"]


def test_yaml_exponent_without_dot_is_a_number(run, tmp_path):
    from utils.config import load_config

    path = tmp_path / "lr.yaml"
    path.write_text("lr: 1e-4\nlr_backbone: 2E-5\nepochs: 3\n")
    cfg = load_config(path)
    assert cfg.lr == pytest.approx(1e-4) and cfg.lr_backbone == pytest.approx(2e-5) and cfg.epochs == 3
    path.write_text("epochs: 1e3\n")
    with pytest.raises(ValueError, match="epochs"):
        load_config(path)


def test_synthetic_dataset_is_generated_only_for_the_embedded_layout(tmp_path, monkeypatch):
    from utils.config import default_config
    from utils.engine.synthetic import prepare_synthetic

    root = tmp_path / "Synthetic"
    layout = {key: str(root / rel) for key, rel in {
        "anno_file_path": "Synthetic_annotations.json", "feature_info_path": "CLIP/Synthetic_info_8frame.json",
        "description_file_path": "Synthetic_description_v6.json", "feature_path": "features",
        "split_root": "splits", "text_embeddings": "text_embeddings.npz"}.items()}
    generated = []
    monkeypatch.setattr("utils.engine.synthetic.ensure_synthetic_dataset", lambda path: generated.append(Path(path)))
    prepare_synthetic(default_config(dataset_name="Synthetic", **{**layout, "feature_path": str(tmp_path / "x")}))
    assert generated == []  # one path elsewhere: not the embedded configuration
    root.mkdir()
    (root / "features").mkdir()
    prepare_synthetic(default_config(dataset_name="Synthetic", **layout))
    assert generated == []  # part of a dataset is there: a missing file is an error, not a new dataset
    shutil.rmtree(root)
    prepare_synthetic(default_config(dataset_name="Synthetic", **layout))
    assert generated == [root]

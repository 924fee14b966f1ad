"""End to end on a tiny synthetic dataset: main.py, test.py, resume after a kill, determinism, selection.

This is the shortened demo that CI runs: it checks that the pipeline writes checkpoints, logs, the CSV,
TensorBoard events and a result file, and that the trained model beats random proposals.
"""
from __future__ import annotations

import json
import os
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
from datasets import build_dataset
from tests.conftest import REPO_ROOT
from utils.config import load_config
from utils.engine import loop as engine
from utils.engine.checkpoint import CheckpointError
from utils.engine.selection import held_out_videos, split_validation
from utils.engine.synthetic import ensure_synthetic_dataset
from utils.scoring.evaluation import ItemDetections, evaluate_detections

pytestmark = pytest.mark.slow
TINY_SIZES = dict(num_classes=8, num_train_videos=16, num_test_videos=12, min_length=120, max_length=260,
                  feature_dim=32)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """demo.yaml pointed at a tiny synthetic dataset, with a tiny model and few epochs."""
    root = tmp_path_factory.mktemp("e2e")
    data = ensure_synthetic_dataset(root / "Synthetic", seed=1, **TINY_SIZES)
    values = yaml.safe_load((REPO_ROOT / "config" / "demo.yaml").read_text())
    for key in ("anno_file_path", "feature_info_path", "description_file_path", "feature_path", "split_root",
                "text_embeddings"):
        values[key] = str(data / Path(values[key]).relative_to("data/Synthetic"))
    values.update(hidden_dim=32, dim_feedforward=64, nheads=4, num_queries=10, epochs=3, batch_size=8, lr=5e-4,
                  num_workers=0, device="cpu", seed=7, text_cache_dir="")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _train(cfg_path: Path, out: Path, *extra: str) -> dict:
    return train_main.main(["--cfg_path", str(cfg_path), "--model_name", "tiny", "--output_root", str(out),
                            *extra])


def _random_proposal_map(cfg_path: Path, seeds=(0, 1, 2)) -> float:
    """Average mAP of 100 uniformly random proposals per item with random labels and scores."""
    cfg = load_config(cfg_path)
    dataset = build_dataset(cfg, "inference", check_features=False)
    values = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        records = []
        for index in range(len(dataset)):
            info = dataset.info(index)
            ends = np.sort(rng.uniform(0, info.duration, size=(100, 2)), axis=1)
            records.append(ItemDetections(info, ends, rng.uniform(size=100),
                                          rng.integers(0, len(dataset.classes), 100)))
        metrics, _ = evaluate_detections(records, dataset.ground_truth, dataset.video_ids, dataset.classes,
                                         "Synthetic")
        values.append(metrics["average_mAP"])
    return float(np.mean(values))


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = _train(tiny_config, out, "--save_result")
    return out, result


def test_training_writes_every_artifact(trained):
    out, result = trained
    assert (out / "ckpt/Synthetic/best_tiny.pkl").is_file() and (out / "ckpt/Synthetic/last_tiny.pkl").is_file()
    state = torch.load(out / "ckpt/Synthetic/state_tiny.pt", weights_only=False)
    assert state["epoch"] == 2 and {"model", "optimizer", "scheduler", "rng", "config"} <= set(state)
    log = (out / "logs/Synthetic/tiny.log").read_text()
    assert "epoch 2 train losses" in log and "selected on the TEST set" in log
    assert "epoch 0 iter 1/" in log and "| scaled loss_bbox" in log  # per-iteration losses, as the original
    assert f"best so far: epoch {result['best']['epoch']}" in log
    assert load_config(out / "logs/Synthetic/tiny_config.yaml").hidden_dim == 32
    rows = (out / "results/excel/Synthetic/tiny_results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(len(row.split(",")) == 1 + 5 + 1 + 7 + 1 for row in rows)
    assert list((out / "runs/Synthetic/tiny").glob("events.out.tfevents.*"))
    detections = json.loads((out / "results/Synthetic/tiny/detection_test_2_raw.json").read_text())
    assert detections["results"] and all(
        {"segment", "score", "label"} <= set(d) for dets in detections["results"].values() for d in dets)
    best = json.loads((out / "results/Synthetic/tiny/best_metrics.json").read_text())
    assert best["epoch"] == result["best"]["epoch"] and "eval_videos_all" in best


def test_trained_model_beats_random_proposals(trained, tiny_config):
    _, result = trained
    random_map = _random_proposal_map(tiny_config)
    assert result["best"]["test"]["average_mAP"] > random_map + 0.02, (result["best"]["test"]["average_mAP"],
                                                                         random_map)


def test_test_py_reproduces_the_selected_epoch(trained, tiny_config):
    out, result = trained
    metrics = test_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root", str(out),
                              "--save_result"])
    assert metrics["average_mAP"] == pytest.approx(result["best"]["test"]["average_mAP"], abs=1e-9)
    assert (out / "results/Synthetic/tiny/test_metrics.json").is_file()
    assert (out / "results/Synthetic/tiny/detection_test_-1_raw.json").is_file()


def test_test_py_errors_on_missing_or_mismatched_checkpoint(trained, tiny_config, tmp_path):
    out, _ = trained
    with pytest.raises(CheckpointError, match="does not exist"):
        test_main.main(["--cfg_path", str(tiny_config), "--model_name", "nope", "--output_root", str(tmp_path)])
    with pytest.raises(CheckpointError, match="--num_queries"):
        test_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root", str(out),
                        "--num_queries", "12"])
    with pytest.raises(CheckpointError, match="--dec_layers"):
        test_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root", str(out),
                        "--dec_layers", "3"])


def test_same_seed_gives_identical_metrics(trained, tiny_config, tmp_path):
    out, first = trained
    second = _train(tiny_config, tmp_path, "--save_result")
    assert second["best"]["epoch"] == first["best"]["epoch"]
    assert second["best"]["test"]["mAP_per_tiou"] == first["best"]["test"]["mAP_per_tiou"]
    a = torch.load(out / "ckpt/Synthetic/last_tiny.pkl")
    b = torch.load(tmp_path / "ckpt/Synthetic/last_tiny.pkl")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_between_epochs_matches_an_uninterrupted_run(trained, tiny_config, tmp_path):
    """Kill a training process once it has saved epoch 0's state, resume, compare with the full run."""
    out, uninterrupted = trained
    state_path = tmp_path / "ckpt/Synthetic/state_tiny.pt"
    command = [sys.executable, "main.py", "--cfg_path", str(tiny_config), "--model_name", "tiny",
               "--output_root", str(tmp_path), "--save_result"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.time() + 300
    while not state_path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = torch.load(state_path, weights_only=False)["epoch"]
    assert saved_epoch < 2, "the process finished before it could be killed"
    # as if the kill had come after the next epoch's CSV row but before its state: the row must not double
    csv_path = tmp_path / "results/excel/Synthetic/tiny_results.csv"
    with open(csv_path, "a") as handle:
        handle.write(f"{saved_epoch + 1},1,2,3\n")
    resumed = _train(tiny_config, tmp_path, "--save_result", "--resume", str(state_path))
    assert resumed["best"]["epoch"] == uninterrupted["best"]["epoch"]
    assert resumed["best"]["test"]["mAP_per_tiou"] == uninterrupted["best"]["test"]["mAP_per_tiou"]
    assert csv_path.read_text() == (out / "results/excel/Synthetic/tiny_results.csv").read_text()
    a = torch.load(out / "ckpt/Synthetic/best_tiny.pkl")
    b = torch.load(tmp_path / "ckpt/Synthetic/best_tiny.pkl")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_select_on_val_holds_out_seen_videos_and_reports_it(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    cfg.select_on = "val"
    train_set = build_dataset(cfg, "train", check_features=False)
    remaining, validation = split_validation(cfg, train_set)
    train_videos = {remaining.videos[item.video].video_id for item in remaining.items}
    val_videos = {validation.videos[item.video].video_id for item in validation.items}
    assert train_videos and val_videos and not (train_videos & val_videos)
    assert validation.classes == train_set.classes  # seen classes
    _, again = split_validation(cfg, build_dataset(cfg, "train", check_features=False))
    assert [i.name for i in again.items] == [i.name for i in validation.items]  # stable under the seed
    result = _train(tiny_config, tmp_path, "--select_on", "val", "--epochs", "2")
    assert "selected on held-out seen-class training videos" in (tmp_path / "logs/Synthetic/tiny.log").read_text()
    assert result["best"]["test"] is not None


def test_held_out_videos_is_seeded_bounded_and_stratified():
    videos = {f"v{i}": {f"c{i % 4}"} for i in range(10)}
    assert held_out_videos(videos, 0.2, 3) == held_out_videos(dict(reversed(list(videos.items()))), 0.2, 3)
    assert len(held_out_videos(videos, 0.2, 3)) == 2 and len(held_out_videos(videos, 0.01, 3)) == 1
    assert len({tuple(held_out_videos(videos, 0.2, seed)) for seed in range(5)}) > 1  # the seed matters
    for seed in range(5):  # 4 held out of 10: every class is validated and still trained on
        held = held_out_videos(videos, 0.4, seed)
        assert {c for v in held for c in videos[v]} == {"c0", "c1", "c2", "c3"}
        assert {c for v in videos if v not in held for c in videos[v]} == {"c0", "c1", "c2", "c3"}
    only_once = {"a": {"rare"}, "b": {"common"}, "c": {"common"}}
    assert all("a" not in held_out_videos(only_once, 0.34, seed) for seed in range(5))  # never untrainable
    with pytest.raises(ValueError, match="val_fraction"):
        held_out_videos(videos, 1.0, 0)

def test_zero_map_first_evaluation_does_not_crash(tiny_config, tmp_path, monkeypatch):
    """The original raised KeyError when no evaluation ever beat 0 mAP; here epoch 0 becomes the best."""
    real_evaluate = engine.evaluate

    def zero_evaluate(*args, **kwargs):
        metrics, merged, records = real_evaluate(*args, **kwargs)
        zeroed = {**metrics, "average_mAP": 0.0, "mAP_per_tiou": [0.0] * len(metrics["mAP_per_tiou"])}
        return zeroed, merged, records

    monkeypatch.setattr(engine, "evaluate", zero_evaluate)  # the test-set evaluation goes through the engine
    result = _train(tiny_config, tmp_path, "--epochs", "2")
    assert result["best"]["epoch"] == 0 and result["best"]["test"]["average_mAP"] == 0.0
    assert (tmp_path / "ckpt/Synthetic/best_tiny.pkl").is_file()


def test_cuda_request_without_cuda_falls_back_with_a_message(caplog):
    from utils.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback path is not taken")
    import logging

    with caplog.at_level(logging.WARNING, logger="gap"):
        logging.getLogger("gap").propagate = True
        assert resolve_device("cuda").type == "cpu"
    assert "CUDA is not available" in caplog.text


def test_filter_threshold_drops_low_scoring_detections(trained, tiny_config):
    out, _ = trained
    test_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root", str(out),
                    "--save_result", "--filter_threshold", "0.05"])
    results = json.loads((out / "results/Synthetic/tiny/detection_test_-1_raw.json").read_text())["results"]
    scores = [d["score"] for dets in results.values() for d in dets]
    assert scores and min(scores) >= 0.05


def test_selected_epoch_without_a_test_evaluation_is_evaluated_at_the_end(tiny_config, tmp_path):
    """--select_on last with --test_interval 2: the last epoch (1) had no test evaluation; the summary still
    reports its test metrics (the same test.py gives for best_<model>.pkl), and the CSV keeps one row per
    per-epoch evaluation."""
    result = _train(tiny_config, tmp_path, "--select_on", "last", "--epochs", "2", "--test_interval", "2")
    assert result["best"]["epoch"] == 1 and result["best"]["test"] is not None
    log = (tmp_path / "logs/Synthetic/tiny.log").read_text()
    assert "Selected epoch 1 (the last epoch (no selection))" in log
    best = json.loads((tmp_path / "results/Synthetic/tiny/best_metrics.json").read_text())
    assert best["epoch"] == 1 and best["selection"] == "last" and best["eval_videos_all"] is not None
    rows = (tmp_path / "results/excel/Synthetic/tiny_results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["0"]
    metrics = test_main.main(["--cfg_path", str(tiny_config), "--model_name", "tiny", "--output_root",
                              str(tmp_path)])
    assert metrics["average_mAP"] == pytest.approx(best["average_mAP"], abs=1e-12)


def test_per_iteration_lines_go_to_the_file_only(tmp_path, capsys):
    from utils.logging import setup_logger

    logger = setup_logger(tmp_path / "x.log")
    logger.debug("iteration detail")
    logger.info("epoch summary")
    for handler in logger.handlers:
        handler.flush()
    console = capsys.readouterr().out
    assert "epoch summary" in console and "iteration detail" not in console
    assert "iteration detail" in (tmp_path / "x.log").read_text()


def test_train_interval_evaluates_the_training_set(tiny_config, tmp_path):
    _train(tiny_config, tmp_path, "--epochs", "2", "--train_interval", "2")
    log = (tmp_path / "logs/Synthetic/tiny.log").read_text()
    assert log.count("training set (seen classes)") == 1 and "epoch 0 training set (seen classes)" in log


def test_eval_videos_all_as_main_protocol_reports_the_original_beside_it(tiny_config, tmp_path):
    result = _train(tiny_config, tmp_path, "--epochs", "1", "--eval_videos", "all")
    best = json.loads((tmp_path / "results/Synthetic/tiny/best_metrics.json").read_text())
    assert best["eval_videos"] == "all" and best["eval_videos_gt"]["eval_videos"] == "gt"
    assert result["best"]["test"]["average_mAP"] <= best["eval_videos_gt"]["average_mAP"] + 1e-12
    log = (tmp_path / "logs/Synthetic/tiny.log").read_text()
    assert "Selected epoch 0" in log and "Same epoch, eval_videos=gt" in log

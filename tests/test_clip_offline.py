"""CLIP without internet: one-line errors when the weights cannot be downloaded, and the offline demo path
(tiny CLIP checkpoint -> synthetic dataset -> training -> localize.py on a generated video) run end to end."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import main as train_main
from models.build import build_model
from models.tiny_clip import TINY_EMBED_DIM, write_synthetic_video
from scripts import demo_table, encode_text, extract_features, localize, make_offline_demo
from tests.conftest import REPO_ROOT
from utils.config import default_config, dump_config
from utils.engine.detector import Detector


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """openai-clip's downloader fails as without internet; the download root is an empty folder."""
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    root = tmp_path / "clip_cache"
    root.mkdir()
    return root


def _assert_one_line_download_error(err: str, root) -> None:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert f"{root}/ViT-B-16.pt is missing" in err and "URLError" in err
    assert "--CLIP_model_name /path/ViT-B-16.pt" in err and "--text_embeddings" in err


def test_scripts_report_a_failed_clip_download_in_one_line(no_network, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert encode_text.cli(["--classes", "high jump", "--out", str(out), "--clip_download_root", str(no_network),
                            "--text_cache_dir", "", "--device", "cpu"]) == 1
    _assert_one_line_download_error(capsys.readouterr().err, no_network)
    assert not out.exists()

    video = write_synthetic_video(tmp_path / "clip.mp4", 16)
    feats = tmp_path / "feats"
    assert extract_features.cli(["--videos", str(video), "--out_dir", str(feats), "--clip_download_root",
                                 str(no_network), "--device", "cpu"]) == 1
    _assert_one_line_download_error(capsys.readouterr().err, no_network)
    assert not list(feats.glob("*.npy")) and not (feats / "feature_info.json").exists()

    cfg = default_config(dataset_name="Thumos14", hidden_dim=TINY_EMBED_DIM, nheads=4, dim_feedforward=64,
                         enc_layers=1, dec_layers=1, num_queries=4, feature_stride=4, slice_size=8, ROIalign_size=4,
                         enable_classAgnostic=True,
                         device="cpu", text_cache_dir="", clip_download_root=str(no_network))
    ckpt = tmp_path / "gap.pkl"
    torch.save(build_model(cfg).state_dict(), ckpt)
    yaml_path = dump_config(cfg, tmp_path / "cfg.yaml")
    results = tmp_path / "localize"
    assert localize.cli(["--cfg_path", str(yaml_path), "--ckpt", str(ckpt), "--video", str(video),
                         "--classes", "high jump", "--out_dir", str(results)]) == 1
    _assert_one_line_download_error(capsys.readouterr().err, no_network)
    assert not list(results.iterdir())


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """scripts/make_offline_demo.py, then the README's training command (one epoch), in a fresh folder."""
    root = tmp_path_factory.mktemp("offline_demo")
    previous = os.getcwd()
    os.chdir(root)  # the README's commands use paths relative to the repository root (contextlib.chdir: 3.11+)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert make_offline_demo.cli([]) == 0
            train_main.main(["--cfg_path", str(REPO_ROOT / "config/offline_demo.yaml"), "--model_name",
                             "offline_demo", "--epochs", "1", "--text_cache_dir", str(root / "cache"),
                             "--device", "cpu"])
    finally:
        os.chdir(previous)
    return root, printed.getvalue()


@pytest.mark.slow
def test_offline_demo_trains_and_localizes_without_internet(offline_run, no_network, monkeypatch, capsys):
    """The README's offline commands, verbatim, from a fresh folder (relative paths as in the repository)."""
    root, printed = offline_run
    monkeypatch.chdir(root)
    commands = [line.strip() for line in printed.splitlines() if line.strip().startswith(".venv/bin/python")]
    assert len(commands) == 2 and "config/offline_demo.yaml" in commands[0]
    meta = json.loads((root / "data/OfflineDemo/Synthetic/synthetic_meta.json").read_text())
    assert meta["feature_dim"] == TINY_EMBED_DIM and meta["clip_model_name"].endswith("tiny_clip.pt")
    assert (root / "ckpt/Synthetic/best_offline_demo.pkl").is_file()

    # localize.py: exactly the command make_offline_demo.py printed
    assert localize.cli(shlex.split(commands[1].split(" ", 2)[2])) == 0
    out = root / "results/localize"
    rows = json.loads((out / "demo_video_detections.json").read_text())["results"]["demo_video"]
    assert rows and {row["label"] for row in rows} <= {"Archery", "Fencing"}
    for suffix in ("_detections.csv", "_detections.srt", "_timeline.png", "_features.npy"):
        assert (out / f"demo_video{suffix}").is_file(), suffix
    # the features are those of the tiny CLIP (32-d), 50 snippets of 8 frames of the 16 s video
    assert np.load(out / "demo_video_features.npy").shape == (50, TINY_EMBED_DIM)
    # and the Python API on the same run gives the same detections
    found = Detector.from_run("logs/Synthetic/offline_demo_config.yaml", "ckpt/Synthetic/best_offline_demo.pkl")
    assert found.localize("data/OfflineDemo/demo_video.mp4", "Archery, Fencing").results_json()["results"][
        "demo_video"] == rows


def _readme_demo_table() -> list[str]:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    start = lines.index(demo_table.HEADER)
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


@pytest.mark.slow
def test_demo_table_row_has_readme_format_and_the_run_numbers(offline_run, capsys):
    root, _ = offline_run
    assert demo_table.main(["--model_name", "offline_demo", "--output_root", str(root), "--label", "tiny"]) == 0
    header, separator, row, last, machine = capsys.readouterr().out.strip().splitlines()
    match = demo_table.ROW_PATTERN.match(row)
    assert match, row
    best = json.loads((root / "results/Synthetic/offline_demo/best_metrics.json").read_text())
    assert int(match["epoch"]) == best["epoch"] == 0
    assert float(match["avg"]) == round(100 * best["average_mAP"], 2)
    assert float(match["ap50"]) == round(100 * best["AP50"], 2)
    assert float(match["ar40"]) == round(100 * best["AR@40"], 2)
    assert float(match["all"]) == round(100 * best["eval_videos_all"]["average_mAP"], 2)
    assert last.startswith("last epoch (0,") and f"{100 * best['average_mAP']:.2f}" in last  # one epoch: same
    assert machine.startswith("measured on: CPU ") and "torch " in machine

    # README's demo table: the script's header and separator, every measured row in the script's format
    table = _readme_demo_table()
    assert table[:2] == [header, separator]
    measured = [line for line in table[2:] if not line.startswith("| random proposals")]
    assert measured and all(demo_table.ROW_PATTERN.match(line) for line in measured), measured
    readme = (REPO_ROOT / "README.md").read_text()
    assert "scripts/demo_table.py" in readme

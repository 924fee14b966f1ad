"""scripts/localize.py: windows, merging, and a full run on a synthetic video with tiny CLIP + tiny GAP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datasets import build_dataset
from datasets.items import ItemInfo
from models.build import build_model
from models.text_encoder import TextEmbeddingError, write_text_embeddings
from models.tiny_clip import TINY_EMBED_DIM, write_synthetic_video, write_tiny_clip_checkpoint
from scripts.localize import cli, main
from tests.dataset_builders import Video, make_cfg, write_dataset
from utils.config import default_config, dump_config
from utils.engine.detector import Detections, Detector, format_score, merge_detections, model_items

CLASSES = "high jump, pole vault, long jump"


def _tiny_cfg(**overrides):
    values = dict(dataset_name="Thumos14", hidden_dim=TINY_EMBED_DIM, nheads=4, dim_feedforward=64, enc_layers=1,
                  dec_layers=1, num_queries=6, enable_classAgnostic=True, enable_refine=True,
                  refine_drop_saResidual=True, salient_loss=True, norm_embed=True, exp_logit_scale=True,
                  proposals_weight_type="after_softmax", postprocess_topk=10, feature_stride=4, slice_size=8,
                  ROIalign_size=4, device="cpu")
    values.update(overrides)
    return default_config(**values)


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("localize")
    clip_ckpt = write_tiny_clip_checkpoint(root / "tiny_clip.pt", seed=5)
    video = write_synthetic_video(root / "my_match.mp4", 60, fps=25, seed=4)  # 15 snippets of 4 frames
    cfg = _tiny_cfg(CLIP_model_name=str(clip_ckpt), text_cache_dir=str(root / "cache"))
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.actionness_embed.bias.fill_(0.0)  # scores well above zero, whatever the random weights
    gap_ckpt = root / "gap_tiny.pkl"
    torch.save(model.state_dict(), gap_ckpt)
    yaml_path = dump_config(cfg, root / "tiny_config.yaml")
    return root, video, gap_ckpt, yaml_path


def test_model_items_follow_the_inference_datasets():
    features = np.zeros((15, TINY_EMBED_DIM), np.float32)
    info = {"snippet_length": 15, "snippet_duration": 2.4, "video_fps": 25.0}
    items = model_items(features, info, _tiny_cfg())  # slice 8, overlap 0.25 -> stride 6, short tail
    assert [info.window for _, _, info in items] == [(0, 7), (6, 13), (12, 14)]
    assert [f.shape[0] for f, _, _ in items] == [8, 8, 3]
    ffps = 25.0 / 4
    assert [info.duration for _, _, info in items] == pytest.approx([7 / ffps, 7 / ffps, 2 / ffps])
    assert [info.time_offset for _, _, info in items] == pytest.approx([0, 6 / ffps, 12 / ffps])
    anet = model_items(features, info, _tiny_cfg(dataset_name="ActivityNet13", rescale_length=10))
    assert len(anet) == 1 and anet[0][0].shape == (10, TINY_EMBED_DIM)
    assert anet[0][2].duration == 2.4 and anet[0][2].window is None
    # THUMOS14 datasets ignore rescale_length (SPEC §3.3), and so does localize.py
    thumos = model_items(features, info, _tiny_cfg(rescale_length=10))
    assert [info.window for _, _, info in thumos] == [(0, 7), (6, 13), (12, 14)]


@pytest.mark.parametrize("overrides", [dict(), dict(inference_slice_overlap=0.5), dict(inference_entire=True),
                                       dict(dataset_name="ActivityNet13", rescale_length=32)])
def test_model_items_are_the_inference_dataset_items(tmp_path, overrides):
    """The detector API cuts a video exactly as the inference dataset does: same features, windows, offsets,
    durations and frame rates (one windowing function, datasets/windows.py)."""
    subset = "val" if overrides.get("dataset_name") == "ActivityNet13" else "test"
    folder = "ActivityNet" if subset == "val" else "THUMOS14"
    paths = write_dataset(tmp_path, {"train_v": Video("train" if subset == "val" else "val", 60, [(1.0, 5.0, "A")]),
                                     "long_v": Video(subset, 200, [(3.0, 9.0, "B"), (40.0, 45.0, "B")])},
                          ["A"], ["B"], dataset_folder=folder)
    cfg = make_cfg(paths, slice_size=64, **overrides)
    dataset = build_dataset(cfg, "inference")
    info = json.loads((tmp_path / "info.json").read_text())["long_v"]
    features = np.load(tmp_path / "features" / "long_v.npy")
    items = model_items(features, info, cfg)
    assert len(items) == len(dataset)
    for index, (tensor, _, info) in enumerate(items):
        expected_features, _, expected = dataset[index]
        assert torch.equal(tensor, expected_features)
        for key in ("window", "time_offset", "duration", "feature_fps"):
            assert getattr(info, key) == getattr(expected, key), key


def test_merge_removes_duplicates_and_applies_class_nms():
    segments = np.array([[0.0, 2.0], [0.0, 2.0], [0.1, 2.0], [5.0, 6.0], [0.0, 2.0]])
    scores = np.array([0.9, 0.9, 0.8, 0.3, 0.5])
    labels = np.array([0, 0, 0, 0, 1])
    owner = np.zeros(5, np.int64)
    items = [(None, {}, ItemInfo("whole video", "video", 6.0))]
    seg, sc, lab = merge_detections(segments, scores, labels, owner, items, nms_threshold=0.0, fuse_windows=False)
    assert len(sc) == 4 and list(sc) == sorted(sc, reverse=True)  # exact duplicate dropped
    seg, sc, lab = merge_detections(segments, scores, labels, owner, items, nms_threshold=0.5, fuse_windows=False)
    assert sc.tolist() == [0.9, 0.5, 0.3] and lab.tolist() == [0, 1, 0]  # (0.1, 2.0) suppressed by (0, 2)


def test_localize_end_to_end_writes_json_and_png(run_files, capsys):
    root, video, gap_ckpt, yaml_path = run_files
    out = root / "out"
    args = ["--cfg_path", str(yaml_path), "--ckpt", str(gap_ckpt), "--video", str(video), "--classes", CLASSES,
            "--out_dir", str(out), "--top", "5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "start (s)" in printed and "my_match_detections.json" in printed

    result = json.loads((out / "my_match_detections.json").read_text())
    assert set(result) == {"results", "external_data"} and list(result["results"]) == ["my_match"]
    rows = result["results"]["my_match"]
    assert rows, "the tiny model must produce detections"
    duration = 59 / 25  # frame_duration of 60 frames at 25 fps
    names = [c.strip() for c in CLASSES.split(",")]
    for row in rows:
        start, end = row["segment"]
        assert -1e-6 <= start <= end <= duration + 1e-3
        assert row["label"] in names and 0.0 <= row["score"] <= 1.0
    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert len(printed.strip().splitlines()) >= 2 + min(5, len(rows))

    png = out / "my_match_timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100

    # second run: features are reused; without NMS there are at least as many detections
    assert main([*args, "--nms_threshold", "0"]) == 0
    assert "reusing features" in capsys.readouterr().out
    raw = json.loads((out / "my_match_detections.json").read_text())["results"]["my_match"]
    assert len(raw) >= len(rows)


def test_api_returns_the_cli_detections_and_writes_csv_srt(run_files, capsys):
    root, video, gap_ckpt, yaml_path = run_files
    out = root / "out_api"
    assert main(["--cfg_path", str(yaml_path), "--ckpt", str(gap_ckpt), "--video", str(video), "--classes", CLASSES,
                 "--out_dir", str(out), "--top", "3"]) == 0
    capsys.readouterr()
    cli_json = json.loads((out / "my_match_detections.json").read_text())

    detector = Detector.from_run(yaml_path, gap_ckpt)  # no feature_dir: extracts again, in memory
    found = detector.localize(video, CLASSES)
    assert found.results_json() == cli_json
    # detect() on the features localize.py kept gives the same again
    features = np.load(out / "my_match_features.npy")
    info = json.loads((out / "my_match_features.json").read_text())["info"]
    again = detector.detect(features, [c.strip() for c in CLASSES.split(",")], info, video="my_match")
    assert again.results_json() == cli_json

    lines = (out / "my_match_detections.csv").read_text().splitlines()
    assert lines[0] == "rank,start_s,end_s,duration_s,label,score" and len(lines) == len(found) + 1
    first = lines[1].split(",")
    assert first[0] == "1" and first[4] == found.rows()[0]["label"]
    assert float(first[5]) == pytest.approx(found.rows()[0]["score"], rel=1e-5)
    srt = (out / "my_match_detections.srt").read_text().strip().split("\n\n")
    assert len(srt) == min(3, len(found))
    starts = [block.splitlines()[1].split(" --> ")[0] for block in srt]
    assert starts == sorted(starts) and all(block.splitlines()[0] == str(k + 1) for k, block in enumerate(srt))
    assert (out / "my_match_timeline.png").is_file()


def test_srt_times_and_small_scores_are_readable():
    found = Detections("v", ["run", "jump"], np.array([[3661.5, 3662.25], [0.0, 0.0004]]), np.array([0.5, 3.14e-5]),
                       np.array([1, 0]), duration=4000.0, snippet_length=10, num_inputs=1)
    blocks = found.to_srt().strip().split("\n\n")
    assert blocks[0].splitlines()[1:] == ["00:00:00,000 --> 00:00:00,001", "#2 run 3.14e-05"]
    assert blocks[1].splitlines()[1:] == ["01:01:01,500 --> 01:01:02,250", "#1 jump 0.5"]
    assert format_score(0.004123) == "0.00412" and format_score(0.87349) == "0.873"


def test_localize_rejects_embeddings_of_the_wrong_width(run_files):
    root, video, gap_ckpt, yaml_path = run_files
    npz = write_text_embeddings(root / "narrow.npz", ["high jump"], np.ones((1, 8), np.float32))
    with pytest.raises(TextEmbeddingError, match="dimension 8"):
        main(["--cfg_path", str(yaml_path), "--ckpt", str(gap_ckpt), "--video", str(video), "--classes",
              "high jump", "--text_embeddings", str(npz), "--out_dir", str(root / "out")])


def test_bad_checkpoint_fails_before_extraction_with_a_one_line_error(run_files, capsys):
    root, video, gap_ckpt, yaml_path = run_files
    out = root / "out_bad"
    base = ["--cfg_path", str(yaml_path), "--video", str(video), "--classes", CLASSES, "--out_dir", str(out)]
    assert cli([*base, "--ckpt", str(root / "missing.pkl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.pkl does not exist" in err and "Traceback" not in err
    # a checkpoint of another shape: named mismatch, and no video was decoded for nothing
    assert cli([*base, "--ckpt", str(gap_ckpt), "--num_queries", "7"]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert not list(out.glob("*_features.npy"))
    assert cli([*base, "--ckpt", str(gap_ckpt), "--classes", " , "]) == 1
    assert "no class names" in capsys.readouterr().err

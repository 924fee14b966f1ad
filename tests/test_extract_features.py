"""Feature extraction: snippet arithmetic, reductions, preprocessing, the script's files, skips and failures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from models.clip_loading import preprocess_frames
from models.tiny_clip import TINY_EMBED_DIM, write_synthetic_video, write_tiny_clip_checkpoint
from scripts.extract_features import ClipFrameEncoder, cli, extract_video_features, main
from utils.video import INFO_KEYS, SnippetAccumulator, VideoDecodeError, VideoReader, list_videos, snippet_info

FPS = 25
NUM_FRAMES = 50  # 2 s at 25 fps -> 6 snippets of 8 frames, 2 frames dropped


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    ckpt = write_tiny_clip_checkpoint(root / "tiny_clip.pt", seed=3)
    videos = root / "videos"
    videos.mkdir()
    write_synthetic_video(videos / "video_a.mp4", NUM_FRAMES, fps=FPS, seed=1)
    write_synthetic_video(videos / "video_b.avi", 37, fps=30, codec="mpeg4", seed=2)
    return root, ckpt, videos


@pytest.fixture(scope="module")
def encoder(assets):
    return ClipFrameEncoder(str(assets[1]), "cpu")


def test_snippet_info_hand_computed():
    assert snippet_info(NUM_FRAMES, 8, 25.0) == {
        "frame_length": 50, "snippet_length": 6, "video_fps": 25.0,
        "frame_duration": 49 / 25, "snippet_duration": 6 * 8 / 25}
    entry = snippet_info(1228, 8, 30.0)  # video_test_0000672 of the release
    assert entry["snippet_length"] == 153 and entry["snippet_duration"] == pytest.approx(40.8)
    assert entry["frame_duration"] == pytest.approx(40.9)


@pytest.mark.fidelity
def test_snippet_info_reproduces_every_release_entry(release_dir):
    files = {"Thumos14/CLIP/Thumos14_info_8frame.json": 8, "ActivityNet13/CLIP/ActivityNet13_info.json": 16}
    checked = 0
    for name, stride in files.items():
        info = json.loads((release_dir / "data" / name).read_text())
        for vid, entry in info.items():
            ours = snippet_info(entry["frame_length"], stride, entry["video_fps"])
            assert set(ours) == set(INFO_KEYS) == set(entry), vid
            assert ours["snippet_length"] == entry["snippet_length"], vid
            for key in ("frame_duration", "snippet_duration"):
                assert math.isclose(ours[key], entry[key], rel_tol=1e-12, abs_tol=1e-9), (vid, key)
            checked += 1
    assert checked == 15362


def test_snippet_accumulator_mean_and_center():
    feats = np.arange(22, dtype=np.float64)[:, None] * np.array([[1.0, -1.0]])  # frame i -> (i, -i)
    mean = SnippetAccumulator(4, "mean")
    order = np.random.default_rng(0).permutation(22)
    for chunk in np.array_split(order, 3):  # any batching / order
        mean.add(chunk, feats[chunk])
    np.testing.assert_allclose(mean.result(22), [[1.5, -1.5], [5.5, -5.5], [9.5, -9.5], [13.5, -13.5],
                                                 [17.5, -17.5]])  # frames 20, 21 dropped
    center = SnippetAccumulator(4, "center")
    center.add(np.arange(22), feats)
    np.testing.assert_array_equal(center.result(22)[:, 0], [2, 6, 10, 14, 18])
    incomplete = SnippetAccumulator(4, "mean")
    incomplete.add(np.array([0, 1, 2]), feats[:3])
    with pytest.raises(ValueError, match="expected 4"):
        incomplete.result(4)


def test_preprocess_matches_openai_clip_pil_transform():
    from clip.clip import _transform
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:45, 0:80]
    image = np.stack([xx * 3, yy * 5, xx + yy], -1) + rng.integers(0, 30, (45, 80, 3))
    image = image.clip(0, 255).astype(np.uint8)
    ours = preprocess_frames(torch.from_numpy(image)[None], 32)[0]
    reference = _transform(32)(Image.fromarray(image))
    assert ours.shape == reference.shape == (3, 32, 32)
    assert (ours - reference).abs().mean() < 0.01  # rounding differences of the two bicubic resamplers
    assert (ours - reference).abs().max() < 0.1


def test_reductions_agree_with_per_frame_features(assets, encoder):
    video = assets[2] / "video_a.mp4"
    per_frame, info1 = extract_video_features(video, encoder, 1, "mean", batch_size=16)
    assert per_frame.shape == (NUM_FRAMES, TINY_EMBED_DIM) and info1["snippet_length"] == NUM_FRAMES
    assert np.linalg.norm(per_frame[1:] - per_frame[:-1], axis=1).min() > 0  # frames differ
    mean, info = extract_video_features(video, encoder, 8, "mean", batch_size=7)
    assert mean.dtype == np.float32 and mean.shape == (6, TINY_EMBED_DIM)
    np.testing.assert_allclose(mean, per_frame[:48].reshape(6, 8, -1).mean(1), rtol=1e-5, atol=1e-5)
    center, _ = extract_video_features(video, encoder, 8, "center", batch_size=64)
    np.testing.assert_allclose(center, per_frame[4:48:8], rtol=1e-5, atol=1e-5)
    assert info == snippet_info(NUM_FRAMES, 8, float(FPS))


def test_too_short_and_corrupt_videos_raise(assets, encoder, tmp_path):
    with pytest.raises(VideoDecodeError, match="fewer than one snippet"):
        extract_video_features(assets[2] / "video_a.mp4", encoder, 64)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoDecodeError, match="bogus.mp4"):
        VideoReader(bogus)


def test_script_writes_release_layout_skips_and_isolates_failures(assets, tmp_path, capsys, monkeypatch):
    root, ckpt, videos = assets
    folder = tmp_path / "videos"
    folder.mkdir()
    for src in videos.iterdir():
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    out, info_path = tmp_path / "features", tmp_path / "info" / "my_info.json"
    args = ["--videos", str(folder), "--out_dir", str(out), "--info_out", str(info_path),
            "--CLIP_model_name", str(ckpt), "--frames_per_snippet", "8", "--device", "cpu", "--batch_size", "16",
            "--workers", "2"]

    assert main(args) == 1  # the broken video fails, the others are extracted
    assert "broken.mp4" in capsys.readouterr().err
    info = json.loads(info_path.read_text())
    assert sorted(info) == ["video_a", "video_b"]
    assert info["video_a"] == snippet_info(NUM_FRAMES, 8, 25.0)
    assert info["video_b"] == {"frame_length": 37, "snippet_length": 4, "video_fps": 30.0,
                               "frame_duration": 36 / 30, "snippet_duration": 32 / 30}
    features = np.load(out / "video_a.npy")
    assert features.shape == (6, TINY_EMBED_DIM) and features.dtype == np.float32
    assert np.load(out / "video_b.npy").shape == (4, TINY_EMBED_DIM)
    settings = json.loads((out / "extraction_settings.json").read_text())
    assert settings["reduce"] == "mean" and settings["frames_per_snippet"] == 8

    # rerun without the broken video: everything is done, CLIP is not even loaded
    (folder / "broken.mp4").unlink()
    mtime = (out / "video_a.npy").stat().st_mtime_ns
    monkeypatch.setattr("scripts.extract_features.ClipFrameEncoder",
                        lambda *a, **k: pytest.fail("nothing to extract, CLIP must not be loaded"))
    assert main(args) == 0
    assert (out / "video_a.npy").stat().st_mtime_ns == mtime
    assert "2 already extracted" in capsys.readouterr().out
    monkeypatch.undo()

    # a list file works too; a video whose info entry is missing is redone; settings may not change
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\nvideos/video_a.mp4\n\n")
    del info["video_a"]
    info_path.write_text(json.dumps(info))
    assert main([*args[:1], str(listing), *args[2:]]) == 0
    assert sorted(json.loads(info_path.read_text())) == ["video_a", "video_b"]

    # another --reduce into the same folder: refused before anything is skipped as "already extracted"
    mean_features = np.load(out / "video_a.npy")
    with pytest.raises(SystemExit, match=r"other settings \(reduce 'mean' -> 'center'\); pass --overwrite"):
        main([*args, "--reduce", "center"])
    with pytest.raises(SystemExit, match=r"CLIP_model_name .* -> 'ViT-B/32'"):
        main([*args, "--CLIP_model_name", "ViT-B/32"])
    # --overwrite of only some of the folder's videos would leave the others extracted the old way
    with pytest.raises(SystemExit, match=r"features of 1 other video\(s\).*\['video_b'\]"):
        main([*args[:1], str(listing), *args[2:], "--reduce", "center", "--overwrite"])
    assert np.array_equal(np.load(out / "video_a.npy"), mean_features)
    # --overwrite of all of them re-extracts with the new settings, which are recorded
    assert main([*args, "--reduce", "center", "--overwrite"]) == 0
    assert json.loads((out / "extraction_settings.json").read_text())["reduce"] == "center"
    assert not np.allclose(np.load(out / "video_a.npy"), mean_features)


def test_list_videos_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no video files"):
        list_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_videos(tmp_path / "missing")


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert cli(["--videos", str(tmp_path / "missing"), "--out_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --videos") and "no such folder or file" in err
    video = write_synthetic_video(tmp_path / "v.mp4", 16)
    assert cli(["--videos", str(video), "--out_dir", str(tmp_path / "out"), "--CLIP_model_name", "ViT-Q/1",
                "--device", "cpu"]) == 1
    assert "available names" in capsys.readouterr().err

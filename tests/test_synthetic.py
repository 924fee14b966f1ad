"""The embedded synthetic dataset: release layout, determinism, idempotence, learnability, CLIP hook."""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest

from datasets import DataWarning
from datasets.synthetic import read_synthetic_meta
from utils.config import default_config
from utils.engine.synthetic import build_dataset, ensure_synthetic_dataset

SMALL = dict(num_classes=8, num_train_videos=12, num_test_videos=8, min_length=100, max_length=200, feature_dim=16)


def synthetic_cfg(root, **overrides):
    meta = read_synthetic_meta(root)
    values = dict(dataset_name="Synthetic", anno_file_path=f"{root}/Synthetic_annotations.json",
                  feature_info_path=f"{root}/CLIP/Synthetic_info_8frame.json",
                  description_file_path=f"{root}/Synthetic_description_v6.json", feature_path=f"{root}/features",
                  split_root=f"{root}/splits", text_embeddings=f"{root}/text_embeddings.npz", feature_stride=8,
                  hidden_dim=meta["feature_dim"] if meta else 128, num_classes=len(meta["classes"]) if meta else 20)
    values.update(overrides)
    return default_config(**values)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("syn") / "Synthetic", seed=1, **SMALL)


@pytest.fixture(scope="module")
def default_root(tmp_path_factory):
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("syn_default") / "Synthetic", seed=0)


def test_release_layout(small_root):
    annotations = json.loads((small_root / "Synthetic_annotations.json").read_text())
    info = json.loads((small_root / "CLIP" / "Synthetic_info_8frame.json").read_text())
    classes = annotations["classes"]
    assert len(classes) == 8 and len(annotations["database"]) == 20 and set(info) == set(annotations["database"])
    assert {e["subset"] for e in annotations["database"].values()} == {"val", "test"}
    for vid, meta in info.items():   # SPEC §2.2 arithmetic, stride 8
        assert meta["snippet_length"] == meta["frame_length"] // 8
        assert meta["snippet_duration"] == pytest.approx(meta["snippet_length"] * 8 / meta["video_fps"])
        assert np.load(small_root / "features" / f"{vid}.npy", mmap_mode="r").shape == (meta["snippet_length"], 16)
        for anno in annotations["database"][vid]["annotations"]:
            assert 0 <= anno["segment"][0] < anno["segment"][1] <= meta["snippet_duration"]
            assert anno["label"] in classes
    for split, n_train in ((75, 6), (50, 4)):
        folder = small_root / "splits" / {75: "train_75_test_25", 50: "train_50_test_50"}[split] / "THUMOS14"
        for split_id in range(10):
            train = (folder / "train" / f"split_{split_id}.list").read_text().split()
            test = (folder / "test" / f"split_{split_id}.list").read_text().split()
            assert len(train) == n_train and sorted(train + test) == sorted(classes) and train == sorted(train)
    descriptions = json.loads((small_root / "Synthetic_description_v6.json").read_text())
    assert descriptions[classes[0]]["idx"] == 0 and len(descriptions[classes[0]]["Elaboration"]["Description"]) == 3


def test_read_by_thumos14_dataset_unchanged(small_root):
    cfg = synthetic_cfg(small_root)
    train, inference = build_dataset(cfg, "train"), build_dataset(cfg, "inference")   # features validated
    assert len(train) > 0 and len(inference) > 0 and train.feature_dim == 16
    assert set(train.classes).isdisjoint(inference.classes) and len(train.classes) == 6
    features, target, info = train[0]
    assert features.shape[1] == 16 and target["segments"].shape[0] >= 1
    assert inference.video_ids == sorted(vid for vid in inference.video_ids) and len(inference.video_ids) == 8
    assert all(label in inference.classes for gt in inference.ground_truth.values() for _, _, label in gt)


def test_text_embeddings_file_contract(small_root):
    from models.text_encoder import build_text_encoder

    encoder = build_text_encoder(synthetic_cfg(small_root))
    meta = read_synthetic_meta(small_root)
    embeddings = encoder.encode(meta["classes"][:3], {})
    assert embeddings.shape == (3, 16)
    assert encoder.logit_scale == pytest.approx(math.log(100.0), abs=1e-6)
    np.testing.assert_allclose(embeddings.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_deterministic_from_seed(small_root, tmp_path):
    again = ensure_synthetic_dataset(tmp_path / "again", seed=1, **SMALL)
    other = ensure_synthetic_dataset(tmp_path / "other", seed=2, **SMALL)
    name = "Synthetic_annotations.json"
    assert (again / name).read_text() == (small_root / name).read_text()
    assert (other / name).read_text() != (small_root / name).read_text()
    vid = "syn_val_0003"
    np.testing.assert_array_equal(np.load(again / "features" / f"{vid}.npy"),
                                  np.load(small_root / "features" / f"{vid}.npy"))


def test_idempotent_atomic_and_guarded(tmp_path):
    root = ensure_synthetic_dataset(tmp_path / "Synthetic", seed=3, **SMALL)
    stamp = os.stat(root / "synthetic_meta.json").st_mtime_ns
    assert ensure_synthetic_dataset(tmp_path / "Synthetic", seed=3, **SMALL) == root
    assert os.stat(root / "synthetic_meta.json").st_mtime_ns == stamp          # not rewritten
    with pytest.raises(FileExistsError, match="other parameters .*seed"):
        ensure_synthetic_dataset(tmp_path / "Synthetic", seed=4, **SMALL)
    ensure_synthetic_dataset(tmp_path / "Synthetic", seed=4, force=True, **SMALL)
    assert read_synthetic_meta(root)["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Synthetic"]          # no temporary folders left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        ensure_synthetic_dataset(tmp_path / "mine", **SMALL)
    with pytest.raises(ValueError, match="num_classes"):
        ensure_synthetic_dataset(tmp_path / "x", num_classes=2)
    with pytest.raises(TypeError, match="unknown parameters"):
        ensure_synthetic_dataset(tmp_path / "x", videos=3)


def _pooled(features, start_s, end_s, ffps=30 / 8):
    a = int(start_s * ffps)
    b = max(a + 1, int(math.ceil(end_s * ffps)))
    return features[a:b].mean(0)


def test_learnable_but_not_trivial(default_root):
    """GT-pooled unseen-class features point to their class text; background does not; a class-agnostic
    direction learned on seen-class training videos separates actions from background in test videos."""
    cfg = synthetic_cfg(default_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        train, test = build_dataset(cfg, "train"), build_dataset(cfg, "inference")
    with np.load(default_root / "text_embeddings.npz") as data:
        names, text = list(data["class_names"]), data["embeddings"]
    text_test = text[[names.index(c) for c in test.classes]]

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    rng = np.random.default_rng(0)
    correct, inside, background = [], [], []
    for video in test.videos:
        features = np.load(test.feature_file(video.video_id))
        busy = np.zeros(len(features), bool)
        for (s, e), c in zip(video.segments, video.class_ids):
            scores = text_test @ unit(_pooled(features, s, e))
            correct.append(scores.argmax() == c)
            inside.append(scores.max())
            busy[int(s * 3.75):int(math.ceil(e * 3.75))] = True
        for _ in range(5):
            a = int(rng.integers(0, len(features) - 20))
            if not busy[a:a + 20].any():
                background.append((text_test @ unit(features[a:a + 20].mean(0))).max())
    assert len(correct) >= 30 and np.mean(correct) >= 0.8
    assert np.mean(inside) > np.mean(background) + 0.1
    assert np.mean(inside) < 0.8                       # related to the text, not equal to it

    database = json.loads((default_root / "Synthetic_annotations.json").read_text())["database"]

    def action_mask(video_id, length):   # every annotated action, whatever its class
        mask = np.zeros(length, bool)
        for anno in database[video_id]["annotations"]:
            s, e = anno["segment"]
            mask[int(s * 3.75):int(e * 3.75)] = True
        return mask

    # class-agnostic direction from the training videos, applied to the test videos
    feats = [np.load(train.feature_file(v.video_id)) for v in train.videos]
    masks = [action_mask(v.video_id, len(f)) for v, f in zip(train.videos, feats)]
    direction = np.mean([f[m].mean(0) - f[~m].mean(0) for f, m in zip(feats, masks) if m.any()], axis=0)
    scores, labels = [], []
    for video in test.videos:
        f = np.load(test.feature_file(video.video_id))
        scores.append(f @ direction)
        labels.append(action_mask(video.video_id, len(f)))
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    ranks = scores.argsort().argsort()
    auc = (ranks[labels].mean() - (labels.sum() - 1) / 2) / (~labels).sum()
    assert auc > 0.85


def test_build_dataset_generates_synthetic_on_first_use(tmp_path):
    root = tmp_path / "data" / "Synthetic"
    cfg = synthetic_cfg(root, hidden_dim=128)
    dataset = build_dataset(cfg, "train")
    assert (root / "synthetic_meta.json").is_file() and len(dataset) > 0 and dataset.feature_dim == 128
    bad = default_config(dataset_name="Synthetic", anno_file_path=str(tmp_path / "elsewhere" / "anno.json"))
    with pytest.raises(FileNotFoundError, match="elsewhere/anno.json not found"):
        build_dataset(bad, "train")
    assert not (tmp_path / "elsewhere").exists()  # not the embedded layout: nothing generated


def test_clip_text_side_hook(tmp_path):
    from models.text_encoder import ClipTextEncoder
    from models.tiny_clip import TINY_EMBED_DIM, write_tiny_clip_checkpoint

    checkpoint = write_tiny_clip_checkpoint(tmp_path / "tiny_clip.pt")
    root = ensure_synthetic_dataset(tmp_path / "Synthetic", clip_model_name=str(checkpoint), **SMALL)
    meta = read_synthetic_meta(root)
    assert meta["feature_dim"] == TINY_EMBED_DIM and meta["clip_model_name"] == str(checkpoint)
    with np.load(root / "text_embeddings.npz") as data:
        stored = data["embeddings"]
    expected = ClipTextEncoder(str(checkpoint), "prompt", "cpu", cache_dir=None).encode(meta["classes"]).numpy()
    np.testing.assert_allclose(stored, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    assert np.load(root / "features" / "syn_val_0000.npy").shape[1] == TINY_EMBED_DIM


def test_make_synthetic_dataset_script(tmp_path, capsys):
    from scripts.make_synthetic_dataset import main

    args = ["--root", str(tmp_path / "s"), "--num_classes", "6", "--num_train_videos", "4", "--num_test_videos", "3",
            "--min_length", "60", "--max_length", "90", "--feature_dim", "8"]
    assert main(args) == 0
    assert "7 videos, 6 classes, feature_dim 8" in capsys.readouterr().out
    assert main(args + ["--seed", "5"]) == 2
    assert "other parameters" in capsys.readouterr().err
    assert main(args + ["--seed", "5", "--force"]) == 0

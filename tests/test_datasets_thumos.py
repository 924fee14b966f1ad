"""Thumos14Dataset on hand-made tiny release files: windows, targets, ground truth, features, collate."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from datasets import DataWarning, Thumos14Dataset, build_dataset, collate_batch, load_ground_truth
from tests.dataset_builders import Video, feature_rows, make_cfg, write_dataset

FFPS = 30 / 8
SNIPPET = 8 / 30


@pytest.fixture
def tiny(tmp_path):
    videos = {
        # shorter than a window; an action touching t = 0; filtered: too short, Ambiguous; unseen -> background
        "v_short": Video("val", 50, [(5.0, 8.0, "Gamma"), (0.0, 3.0, "Alpha"), (10.0, 10.2, "Beta"),
                                     (4.0, 6.0, "Ambiguous")]),
        # 251 snippets -> training windows [0,127] [32,159] [64,191] [96,223] [123,250]
        "v_long": Video("val", 251, [(20.0, 30.0, "Alpha"), (64.0, 251 * SNIPPET, "Beta")]),
        "v_empty": Video("val", 80, [(2.0, 9.0, "Gamma")]),
        # 200 snippets -> inference windows [0,127] [96,199]
        "t_a": Video("test", 200, [(33.0, 34.0, "Delta"), (31.0, 35.0, "Gamma")]),
        "t_none": Video("test", 100, [(1.0, 5.0, "Alpha")]),
        "video_test_0000270": Video("test", 90, [(1.0, 5.0, "Gamma")]),   # hard-coded exclusion (SPEC §2.6)
        "t_noinfo": Video("test", 90, [(1.0, 5.0, "Gamma")], info=False, features=False),
    }
    paths = write_dataset(tmp_path, videos, ["Alpha", "Beta"], ["Delta", "Gamma"],
                          classes=["Alpha", "Beta", "Delta", "Gamma"])
    return paths


def dataset(paths, mode, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return build_dataset(make_cfg(paths, **overrides), mode)


def test_training_windows_and_integrity(tiny):
    ds = dataset(tiny, "train")
    assert ds.classes == ["Alpha", "Beta"]
    # v_long window [96,223] holds only 44% of the Alpha action -> no instance -> dropped in training;
    # v_empty has only an unseen class -> no window
    assert ds.item_names == ["v_long_window_0_127", "v_long_window_32_159", "v_long_window_64_191",
                             "v_long_window_123_250", "v_short_window_0_49"]
    names = {item.name: item for item in ds.items}
    np.testing.assert_allclose(names["v_long_window_32_159"].segments, [[20.0 - 32 / FFPS, 30.0 - 32 / FFPS]])
    # action ending at the video end: clipped to the window end (e/ffps), kept (2.667 / 2.933 >= 0.75)
    tail = ds.target(3)
    assert tail["semantic_labels"].tolist() == [1]
    np.testing.assert_allclose(names["v_long_window_123_250"].segments, [[64.0 - 123 / FFPS, 127 / FFPS]])
    assert ds.info(3).time_offset == pytest.approx(123 / FFPS) and ds.info(3).window == (123, 250)
    assert np.flatnonzero(~tail["salient_mask"][0].numpy())[-1] == 127


def test_short_video_and_action_at_t0(tiny):
    ds = dataset(tiny, "train")
    features, target, info = ds[4]
    assert features.shape == (50, 4) and features.dtype == torch.float32
    np.testing.assert_array_equal(features.numpy(), feature_rows("v_short", 50, 4))
    duration = 49 / FFPS   # Dw covers 49 snippet intervals (SPEC §12 #19)
    assert info.duration == pytest.approx(duration)
    assert info.name == "v_short_window_0_49" and info.source_video == "v_short"
    # only Alpha survives: Gamma unseen, Beta too short, Ambiguous dropped
    assert target["semantic_labels"].tolist() == [0] and target["labels"].tolist() == [0]
    np.testing.assert_allclose(target["segments"].numpy(), [[1.5 / duration, 3.0 / duration]], rtol=1e-6)
    assert target["segments"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["salient_mask"].shape == (1, 50)
    # start floor(0) = 0, end min(ceil(3 / Dw * 50) + 1, 50) = 13
    assert np.flatnonzero(~target["salient_mask"][0].numpy()).tolist() == list(range(0, 13))


def test_inference_windows_keep_everything(tiny):
    ds = dataset(tiny, "inference")
    assert ds.classes == ["Delta", "Gamma"]
    assert ds.item_names == ["t_a_window_0_127", "t_a_window_96_199", "t_none_window_0_99"]
    first, second, empty = ds.target(0), ds.target(1), ds.target(2)
    # Gamma keeps 0.717 < 0.75 in window 0 -> dropped there; Delta keeps 0.867 -> kept, clipped
    assert first["semantic_labels"].tolist() == [0]
    np.testing.assert_allclose(ds.items[0].segments, [[33.0, 127 / FFPS]])
    # window 1 holds both, ordered by start + end (Gamma 66 < Delta 67)
    assert second["semantic_labels"].tolist() == [1, 0]
    assert ds.info(1).time_offset == pytest.approx(96 / FFPS) and ds.info(1).feature_fps == FFPS
    assert ds.info(1).duration == pytest.approx(103 / FFPS)
    assert ds[1][0].shape == (104, 4)
    # a window without instances keeps empty targets
    assert empty["segments"].shape == (0, 2) and empty["salient_mask"].shape == (0, 100)
    assert empty["labels"].numel() == 0


def test_window_times_map_back_to_video(tiny):
    ds = dataset(tiny, "inference")
    item = ds.items[1]
    recovered = ds.items[1].segments + ds.info(1).time_offset
    np.testing.assert_allclose(recovered, [[31.0, 35.0], [33.0, 34.0]])
    assert item.window == (96, 199)
    features, _, _ = ds[1]
    np.testing.assert_array_equal(features.numpy(), feature_rows("t_a", 200, 4)[96:200])


def test_ground_truth_and_video_ids(tiny):
    with pytest.warns(DataWarning, match="t_noinfo"):
        ds = build_dataset(make_cfg(tiny), "inference")
    assert ds.ground_truth == {"t_a": [(31.0, 35.0, "Gamma"), (33.0, 34.0, "Delta")]}
    assert ds.video_ids == ["t_a", "t_none"]          # excluded video and the one without info are gone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        gt, ids = load_ground_truth(tiny["anno_file_path"], ds.classes, "test", "Thumos14",
                                    tiny["feature_info_path"], 8)
    assert gt == ds.ground_truth and ids == ds.video_ids
    train = dataset(tiny, "train")
    assert set(train.ground_truth) == {"v_long", "v_short"}
    assert train.video_ids == ["v_empty", "v_long", "v_short"]


def test_load_ground_truth_without_info_uses_annotation_fps(tiny):
    gt, ids = load_ground_truth(tiny["anno_file_path"], ["Delta", "Gamma"], "test", "Thumos14", None, 8)
    assert gt["t_a"] == [(31.0, 35.0, "Gamma"), (33.0, 34.0, "Delta")]
    assert "t_noinfo" in gt and "video_test_0000270" not in ids
    with pytest.raises(ValueError, match="feature_stride"):
        load_ground_truth(tiny["anno_file_path"], ["Delta", "Gamma"], "test", "Thumos14")


def test_synthetic_name_has_no_hardcoded_exclusions(tiny):
    ds = dataset(tiny, "inference", dataset_name="Synthetic")
    assert "video_test_0000270" in ds.video_ids


def test_inference_entire(tiny):
    ds = dataset(tiny, "inference", inference_entire=True)
    assert ds.item_names == ["t_a"]
    features, target, info = ds[0]
    assert features.shape == (200, 4) and info.window is None
    assert info.duration == pytest.approx(200 * SNIPPET)
    np.testing.assert_allclose(ds.items[0].segments, [[31.0, 35.0], [33.0, 34.0]])


def test_target_type_none_uses_class_labels_and_close_set(tiny):
    ds = dataset(tiny, "inference", target_type="none")
    assert ds.target(1)["labels"].tolist() == [1, 0]
    closed = dataset(tiny, "inference", task="close_set")
    assert closed.classes == ["Alpha", "Beta", "Delta", "Gamma"]
    assert closed.ground_truth["t_none"] == [(1.0, 5.0, "Alpha")]


def test_collate_pads_and_masks(tiny):
    ds = dataset(tiny, "inference")
    features, mask, targets, infos = collate_batch([ds[1], ds[0]])
    assert features.shape == (2, 128, 4) and mask.shape == (2, 128) and mask.dtype == torch.bool
    assert mask[0, :104].logical_not().all() and mask[0, 104:].all() and not mask[1].any()
    assert (features[0, 104:] == 0).all()
    np.testing.assert_array_equal(features[0, :104].numpy(), ds[1][0].numpy())
    assert [info.name for info in infos] == ["t_a_window_96_199", "t_a_window_0_127"]
    assert [len(t["labels"]) for t in targets] == [len(ds.target(1)["labels"]), len(ds.target(0)["labels"])]


def test_dataloader_round_trip(tiny):
    ds = dataset(tiny, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False, collate_fn=collate_batch)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[-1][0].shape == (1, 50, 4)


def test_modes_are_validated(tiny):
    with pytest.raises(ValueError, match="mode"):
        Thumos14Dataset(make_cfg(tiny), "test")


def test_training_videos_cut_like_inference_and_restricted(tiny):
    ds = dataset(tiny, "train")
    held_out = build_dataset(make_cfg(tiny), "train", windows="inference").restrict(["v_long"])
    assert held_out.classes == ds.classes and held_out.video_ids == ["v_long"]
    assert held_out.item_names == ["v_long_window_0_127", "v_long_window_96_223", "v_long_window_192_250"]
    assert held_out.info(2).window == (192, 250) and held_out[2][0].shape == (59, 4)
    assert list(held_out.ground_truth) == ["v_long"]
    rest = ds.restrict(["v_short", "v_empty"])
    assert rest.item_names == ["v_short_window_0_49"] and rest.video_ids == ["v_empty", "v_short"]
    assert rest[0][2].source_video == "v_short" and len(ds) == 5   # the original is untouched
    with pytest.raises(ValueError, match="not videos of this dataset"):
        ds.restrict(["t_a"])


def test_features_are_memory_mapped_and_windows_sliced(tiny, monkeypatch):
    ds = dataset(tiny, "inference")
    calls = []
    real_load = np.load
    monkeypatch.setattr("datasets.base.np.load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    features, _, _ = ds[1]                              # window [96, 199] of t_a
    assert calls == [{"mmap_mode": "r"}]
    assert isinstance(ds._open(ds.feature_file("t_a"), ds.item_video(1)), np.memmap)
    assert features.shape == (104, 4) and features.is_contiguous()
    assert not isinstance(features.numpy(), np.memmap)   # a float32 copy of the window's rows only

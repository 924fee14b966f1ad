"""ActivityNet13Dataset on hand-made tiny release files: whole videos, nearest resampling, 1 s filter."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from datasets import ActivityNet13Dataset, DataWarning, build_dataset, load_ground_truth
from datasets.activitynet import rescale_features
from tests.dataset_builders import Video, feature_rows, make_cfg, write_dataset

STRIDE = 16


@pytest.fixture
def tiny(tmp_path):
    snip = STRIDE / 30
    videos = {
        "v_b": Video("train", 7, [(0.5, 3.0, "Alpha"), (0.1, 0.9, "Alpha")]),   # 0.8 s instance dropped
        "v_a": Video("train", 40, [(10.0, 7 * snip + 14.0, "Beta"), (0.0, 5.0, "Alpha")]),
        "v_c": Video("train", 30, [(1.0, 1.8, "Beta")]),                      # nothing longer than 1 s -> dropped
        "v_d": Video("val", 20, [(2.0, 20 * snip + 2.0, "Gamma")]),           # ends 2 s after the features
        "v_e": Video("val", 20, [(2.0, 6.0, "Alpha")]),                       # seen class only -> dropped
        "v_f": Video("validation", 20, [(2.0, 6.0, "Gamma")]),               # other subset string
    }
    return write_dataset(tmp_path, videos, ["Alpha", "Beta"], ["Gamma"], dataset_folder="ActivityNet",
                         stride=STRIDE, gzip_annotations=True)


def dataset(paths, mode, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return build_dataset(make_cfg(paths, **{"dataset_name": "ActivityNet13", "rescale_length": 16, **overrides}),
                             mode)


def test_interpolation_is_nearest_as_spec():
    x = torch.arange(7, dtype=torch.float32)[:, None].repeat(1, 3)
    picked = rescale_features(x, 16)[:, 0].long().tolist()
    assert picked == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6]   # SPEC Appendix B.5
    # 700 -> 300 follows the float32 rule, which differs from the exact rational one at i = 27
    rows = rescale_features(torch.arange(700, dtype=torch.float32)[:, None], 300)[:, 0].long().numpy()
    scale = np.float32(700 / 300)
    np.testing.assert_array_equal(rows, np.floor(np.arange(300, dtype=np.float32) * scale).astype(int))
    assert rows[27] != 27 * 700 // 300


def test_train_items_whole_videos(tiny):
    ds = dataset(tiny, "train")
    assert ds.item_names == ["v_a", "v_b"]          # sorted; v_c has no instance > 1 s
    features, target, info = ds[1]
    assert features.shape == (16, 4)
    expected = feature_rows("v_b", 7, 4)[[0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6]]
    np.testing.assert_array_equal(features.numpy(), expected)
    duration = 7 * STRIDE / 30
    assert info.duration == pytest.approx(duration) and info.time_offset == 0.0
    assert info.window is None and info.feature_fps is None and info.source_video == "v_b"
    np.testing.assert_allclose(target["segments"].numpy(), [[1.75 / duration, 2.5 / duration]], rtol=1e-6)
    assert target["salient_mask"].shape == (1, 16)     # built on the resampled length
    a_target = ds.target(0)
    assert a_target["semantic_labels"].tolist() == [0, 1]   # sorted by start + end


def test_inference_mode_val_subset_exact_match_and_overshoot(tiny):
    with pytest.warns(DataWarning, match="kept unclipped"):
        ds = build_dataset(make_cfg(tiny, dataset_name="ActivityNet13", rescale_length=16), "inference")
    assert ds.item_names == ["v_d"] and ds.classes == ["Gamma"]   # 'validation' is not 'val'
    seg = ds.target(0)["segments"].numpy()
    assert seg[0, 0] + seg[0, 1] / 2 > 1.0               # end beyond snippet_duration: not clipped
    assert ds.video_ids == ["v_d"] and list(ds.ground_truth) == ["v_d"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        gt, ids = load_ground_truth(tiny["anno_file_path"], ["Gamma"], "val", "ActivityNet13",
                                    tiny["feature_info_path"])
    assert gt == ds.ground_truth and ids == ds.video_ids


def test_rescale_zero_keeps_length(tiny):
    ds = dataset(tiny, "train", rescale_length=0)
    features, target, info = ds[0]
    assert features.shape == (40, 4) and target["salient_mask"].shape == (2, 40)
    np.testing.assert_array_equal(features.numpy(), feature_rows("v_a", 40, 4))


def test_class_is_activitynet13_dataset(tiny):
    assert isinstance(dataset(tiny, "train"), ActivityNet13Dataset)

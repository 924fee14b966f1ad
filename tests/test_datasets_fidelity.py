"""Items of the datasets on the release's real annotation files == the official code's items (fixtures C).

Only metadata and targets are compared (no feature file is needed); see ../shared/fixtures/reference/README.md.
"""
from __future__ import annotations

import warnings

import pytest

from datasets import ActivityNet13Dataset, DataWarning, Thumos14Dataset, load_ground_truth
from scripts.item_dump import compare_dumps, dump_mode, read_dump
from utils.config import default_config

pytestmark = pytest.mark.fidelity


def thumos_cfg(release, split=75):
    data = release / "data" / "Thumos14"
    return default_config(
        dataset_name="Thumos14", anno_file_path=str(data / "Thumos14_annotations.json"),
        feature_info_path=str(data / "CLIP" / "Thumos14_info_8frame.json"),
        description_file_path=str(data / "Thumos14_description_v6.json"), feature_path="/nonexistent",
        feature_stride=8, split=split, split_id=0, split_root=str(release / "splits"))


def dump(dataset_class, cfg) -> dict:
    out = {"modes": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for mode in ("train", "inference"):
            out["modes"][mode] = dump_mode(dataset_class(cfg, mode, check_features=False))
    return out


@pytest.fixture(scope="module")
def thumos_dump(release_dir):
    return dump(Thumos14Dataset, thumos_cfg(release_dir))


def test_thumos14_items_equal_official(thumos_dump, reference_dir):
    reference = read_dump(reference_dir / "dataset_thumos14_split75_0.json")
    assert compare_dumps(thumos_dump, reference, atol=1e-6) == []
    train, inference = thumos_dump["modes"]["train"], thumos_dump["modes"]["inference"]
    # SPEC §3.2 / Appendix B.8
    assert (train["num_items"], train["num_instances"]) == (2541, 8488)
    assert inference["num_items"] == 1758 and inference["num_source_videos"] == 208
    assert len(inference["video_ids"]) == 208


def test_thumos14_ground_truth(thumos_dump, release_dir, reference_dir):
    gt = thumos_dump["modes"]["inference"]["eval_ground_truth"]
    assert len(gt) == 50 and sum(len(v["annotations"]) for v in gt.values()) == 778
    reference = read_dump(reference_dir / "dataset_thumos14_split75_0.json")["modes"]["inference"]
    cfg = thumos_cfg(release_dir)
    ground_truth, video_ids = load_ground_truth(cfg.anno_file_path, reference["classes"], "test", "Thumos14",
                                                cfg.feature_info_path, 8)
    assert ground_truth == {vid: [(a["segment"][0], a["segment"][1], a["label"]) for a in v["annotations"]]
                            for vid, v in reference["eval_ground_truth"].items()}
    assert video_ids == thumos_dump["modes"]["inference"]["video_ids"]


def test_thumos14_split50_counts(release_dir):
    # SPEC §3.2: 50:50 split 0 -> 1,823 training windows; GT 1,293 instances in 98 videos
    cfg = thumos_cfg(release_dir, split=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert len(Thumos14Dataset(cfg, "train", check_features=False)) == 1823
        gt = Thumos14Dataset(cfg, "inference", check_features=False).ground_truth
    assert len(gt) == 98 and sum(map(len, gt.values())) == 1293


def test_activitynet13_items_equal_official(release_dir, reference_dir):
    data = release_dir / "data" / "ActivityNet13"
    cfg = default_config(
        dataset_name="ActivityNet13", anno_file_path=str(reference_dir / "anet13_annotations_rebuilt.json.gz"),
        feature_info_path=str(data / "CLIP" / "ActivityNet13_info.json"),
        description_file_path=str(data / "ActivityNet13_description_v6.json"), feature_path="/nonexistent",
        feature_stride=16, rescale_length=300, split=75, split_id=0, split_root=str(release_dir / "splits"))
    mine = dump(ActivityNet13Dataset, cfg)
    reference = read_dump(reference_dir / "dataset_anet_split75_0.json.gz")
    assert compare_dumps(mine, reference, atol=1e-6) == []
    assert mine["modes"]["train"]["num_items"] == 7156 and mine["modes"]["inference"]["num_items"] == 1171

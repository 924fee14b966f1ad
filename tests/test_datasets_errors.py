"""Errors a user meets with bad data files: raised at construction, naming the file/key and what was expected."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from datasets import DataWarning, FeatureFileError, build_dataset, read_split_classes
from datasets.splits import read_class_list
from tests.dataset_builders import Video, make_cfg, write_dataset


def videos(count=8, length=60):
    out = {f"v_{k:02d}": Video("val", length, [(1.0, 4.0, "Alpha")]) for k in range(count)}
    out["t_00"] = Video("test", length, [(1.0, 4.0, "Gamma")])
    return out


@pytest.fixture
def paths(tmp_path):
    return write_dataset(tmp_path, videos(), ["Alpha"], ["Gamma"])


def build(paths, mode="train", **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return build_dataset(make_cfg(paths, **overrides), mode)


def test_missing_feature_files_listed(paths, tmp_path):
    for k in range(7):
        (tmp_path / "features" / f"v_{k:02d}.npy").unlink()
    with pytest.raises(FileNotFoundError) as err:
        build(paths)
    message = str(err.value)
    assert "7 of 8 feature files are missing" in message and "v_00.npy" in message
    assert "v_05.npy" not in message                 # only the first few are listed
    # without the check, construction succeeds and only the first access fails, naming the file
    dataset = build_dataset(make_cfg(paths), "train", check_features=False)
    with pytest.raises(FileNotFoundError, match="v_00.npy"):
        dataset[0]


def test_feature_length_disagrees_with_info(paths, tmp_path):
    np.save(tmp_path / "features" / "v_03.npy", np.zeros((59, 4), dtype=np.float32))
    with pytest.raises(FeatureFileError, match=r"v_03.npy: 59 rows, but .*info.json gives snippet_length 60"):
        build(paths)
    dataset = build_dataset(make_cfg(paths), "train", check_features=False)
    with pytest.raises(FeatureFileError, match="snippet_length 60"):
        dataset[3]


def test_feature_dimension_disagreements(paths, tmp_path):
    np.save(tmp_path / "features" / "v_01.npy", np.zeros((60, 5), dtype=np.float32))
    with pytest.raises(FeatureFileError, match="different dimensions"):
        build(paths)
    np.save(tmp_path / "features" / "v_01.npy", np.zeros((60, 4), dtype=np.float32))
    with pytest.raises(FeatureFileError, match="4 channels but the model expects 8 .*--hidden_dim"):
        build(paths, hidden_dim=8)
    assert build(paths).feature_dim == 4


def test_feature_file_not_2d(paths, tmp_path):
    np.save(tmp_path / "features" / "v_02.npy", np.zeros((60, 2, 2), dtype=np.float32))
    with pytest.raises(FeatureFileError, match=r"v_02.npy: shape \(60, 2, 2\)"):
        build(paths)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(paths, tmp_path, bad):
    array = np.zeros((60, 4), dtype=np.float32)
    array[17, 2] = bad
    np.save(tmp_path / "features" / "v_04.npy", array)
    with pytest.raises(FeatureFileError, match=r"NaN or inf: .*v_04.npy \(row 17\)"):
        build(paths)
    assert len(build_dataset(make_cfg(paths), "train", check_features="shape")) == 8   # value scan skipped
    dataset = build_dataset(make_cfg(paths), "train", check_features=False)
    with pytest.raises(FeatureFileError, match=r"v_04.npy contains NaN or inf \(row 17\)"):
        dataset[4]


def test_class_of_split_not_in_annotations(tmp_path):
    paths = write_dataset(tmp_path, videos(), ["Alpha", "Omega"], ["Gamma"], classes=["Alpha", "Gamma"])
    with pytest.raises(ValueError, match=r"\['Omega'\] of split list .*split_0.list are not in the annotation file"):
        build(paths)


def test_segment_after_video_end_warns_and_is_kept(tmp_path):
    vids = videos()
    vids["v_00"] = Video("val", 60, [(10.0, 25.0, "Alpha")])   # the video lasts 16 s
    paths = write_dataset(tmp_path, vids, ["Alpha"], ["Gamma"])
    with pytest.warns(DataWarning, match=r"1 annotation segments .* 9.00 s past the end in v_00"):
        dataset = build_dataset(make_cfg(paths), "train")
    assert dataset.ground_truth["v_00"] == [(10.0, 25.0, "Alpha")]   # not clipped, as the original


def test_split_list_errors_and_line_endings(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_75_test_25/THUMOS14/test/split_3.list not found"):
        read_split_classes(tmp_path, "Thumos14", 75, 3, "inference")
    with pytest.raises(ValueError, match="split must be 75 or 50"):
        read_split_classes(tmp_path, "Thumos14", 60, 0, "train")
    path = tmp_path / "crlf.list"
    path.write_bytes(b"Alpha\r\nBeta\r\nGamma")          # CRLF and no final newline (SPEC §12 #35 fixed)
    assert read_class_list(path) == ["Alpha", "Beta", "Gamma"]
    path.write_text("Alpha\nBeta\nAlpha\n")
    with pytest.raises(ValueError, match="more than once"):
        read_class_list(path)


def test_annotation_file_errors(paths, tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file .*nope.json not found"):
        build(paths, anno_file_path=str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        build(paths, anno_file_path=str(bad))
    bad.write_text(json.dumps({"classes": [], "database": {"x": {"subset": "val", "annotations": [
        {"segment": [5.0, 2.0], "label": "Alpha"}]}}}))
    with pytest.raises(ValueError, match=r"database\['x'\]\['annotations'\]\[0\] ends before it starts"):
        build(paths, anno_file_path=str(bad))
    bad.write_text(json.dumps({"classes": ["Alpha"], "database": {"x": {"subset": "training", "annotations": []}}}))
    with pytest.raises(ValueError, match=r"no video with subset 'val' \(subsets present: \['training'\]\)"):
        build(paths, anno_file_path=str(bad))


def test_info_file_errors(paths, tmp_path):
    info = tmp_path / "bad_info.json"
    info.write_text(json.dumps({"v_00": {"snippet_length": 60, "video_fps": 30.0}}))
    with pytest.raises(ValueError, match=r"entry 'v_00' lacks \['snippet_duration'\]"):
        build(paths, feature_info_path=str(info))
    info.write_text(json.dumps({"other_id": {"snippet_length": 60, "video_fps": 30.0, "snippet_duration": 16.0}}))
    with pytest.raises(ValueError, match="none of the subset 'val' videos .* is in the feature info file"):
        build(paths, feature_info_path=str(info))


def test_description_file_needed_only_for_descriptions(paths, tmp_path):
    missing = str(tmp_path / "no_descriptions.json")
    with pytest.warns(DataWarning, match="no_descriptions.json not found"):
        dataset = build_dataset(make_cfg(paths, description_file_path=missing), "train")
    assert dataset.descriptions == {}
    with pytest.raises(FileNotFoundError, match="needed by --target_type description"):
        build(paths, description_file_path=missing, target_type="description")
    assert build(paths).descriptions["Alpha"]["Elaboration"]["Description"] == ["does Alpha"]

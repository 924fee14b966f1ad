"""scripts/inspect_dataset.py and the dump comparison it relies on."""
from __future__ import annotations

import copy
import gzip
import json

import pytest

from scripts.inspect_dataset import main
from scripts.item_dump import compare_dumps, false_ranges
from tests.dataset_builders import Video, write_dataset


@pytest.fixture
def paths(tmp_path):
    videos = {"v_a": Video("val", 251, [(20.0, 30.0, "Alpha"), (40.0, 44.0, "Beta")]),
              "t_a": Video("test", 200, [(31.0, 35.0, "Gamma")]),
              "t_b": Video("test", 60, [], features=False)}
    return write_dataset(tmp_path, videos, ["Alpha", "Beta"], ["Gamma"])


def flags(paths):
    return [f"--{key}={value}" for key, value in paths.items()]


def test_dump_layout_and_self_compare(paths, tmp_path, capsys):
    out = tmp_path / "items.json"
    assert main(flags(paths) + ["--out", str(out)]) == 0   # no feature needed (t_b has none)
    dump = json.loads(out.read_text())
    train, inference = dump["modes"]["train"], dump["modes"]["inference"]
    assert train["classes"] == ["Alpha", "Beta"] and train["num_items"] == len(train["items"]) == 5
    assert inference["item_names"] == ["t_a_window_0_127", "t_a_window_96_199", "t_b_window_0_59"]
    item = inference["items"][1]
    assert item["src_video_name"] == "t_a" and item["window"] == [96, 199] and item["feature_length"] == 104
    assert item["time_offset"] == pytest.approx(96 / 3.75) and item["feature_duration"] == pytest.approx(103 / 3.75)
    assert item["annotations"][0]["label"] == "Gamma" and item["target"]["semantic_label_names"] == ["Gamma"]
    assert item["target"]["salient_false_ranges"][0] == item["target"]["mask_labels_one_ranges"]
    assert inference["eval_ground_truth"] == {"t_a": {"feature_duration": pytest.approx(200 * 8 / 30),
                                                      "annotations": [{"segment": [31.0, 35.0], "label": "Gamma"}]}}
    capsys.readouterr()
    assert main(flags(paths) + ["--out", str(tmp_path / "again.json.gz"), "--compare", str(out)]) == 0
    assert "identical to" in capsys.readouterr().out
    assert json.loads(gzip.decompress((tmp_path / "again.json.gz").read_bytes())) == dump


def test_compare_reports_differences(paths, tmp_path, capsys):
    out = tmp_path / "items.json"
    assert main(flags(paths) + ["--mode", "inference", "--out", str(out)]) == 0
    reference = json.loads(out.read_text())
    reference["modes"]["inference"]["items"][1]["target"]["segments_cw"][0][0] += 1e-5
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    capsys.readouterr()
    code = main(flags(paths) + ["--mode", "inference", "--out", str(out), "--compare", str(tmp_path / "ref.json")])
    assert code == 1
    assert "modes.inference.items[1].target.segments_cw[0][0]" in capsys.readouterr().out


def test_compare_dumps_checks_counts_names_and_tolerance():
    mine = {"modes": {"train": {"num_items": 2, "item_names": ["a", "b"], "items": [{"x": 1.0}, {"x": 2.0}]}}}
    same = copy.deepcopy(mine)
    same["modes"]["train"]["items"][0]["x"] += 5e-7
    assert compare_dumps(mine, same) == []
    other = copy.deepcopy(mine)
    other["modes"]["train"].update(num_items=3, item_names=["a", "c"])
    other["modes"]["train"]["items"].append({"x": 3.0})
    diffs = compare_dumps(mine, other)
    assert any("num_items" in d for d in diffs) and any("item_names[1]" in d for d in diffs)
    assert any("items: length 2 != 3" in d for d in diffs)
    assert compare_dumps(mine, {"modes": {"inference": {}}}) == ["modes.inference: missing"]


def test_false_ranges():
    assert false_ranges([True, False, False, True, False]) == [[1, 3], [4, 5]]
    assert false_ranges([True, True]) == []


def test_bad_config_is_reported(paths, tmp_path, capsys):
    assert main(flags(paths) + ["--split_id", "7", "--out", str(tmp_path / "x.json")]) == 2
    assert "split_7.list not found" in capsys.readouterr().err

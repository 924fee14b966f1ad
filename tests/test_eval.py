"""The evaluation entry point: reference fixtures (part D), video sets, results files, bad input."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from datasets.items import ItemInfo
from utils.scoring.evaluation import (
    ItemDetections,
    evaluate_detections,
    evaluate_merged,
    load_results_json,
    results_json,
)

METRIC_KEYS = ["mAP_per_tiou", "average_mAP", "AP50", "AR@1", "AR@5", "AR@10", "AR@25", "AR@40", "AR@50",
               "AR@100", "AUC"]


def load_fixture(path):
    """Fixture -> (raw json, classes, ground truth dict, per-item records, evaluated video ids)."""
    data = json.loads(path.read_text())
    classes = data["classes"]
    ground_truth = {}
    for video, cls, t0, t1 in data["ground_truth"]:
        ground_truth.setdefault(video, []).append((t0, t1, classes[cls]))
    items = []
    for name, rows in data["detections"].items():
        meta = data["items"][name]
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        window = meta.get("window")
        info = ItemInfo(name, meta.get("src_video_name", name), 0.0, meta.get("time_offset", 0.0),
                        tuple(window) if window is not None else None, meta.get("feature_fps"))
        # float32 as PostProcess hands them over (the fixture stores float32 values)
        items.append(ItemDetections(info, arr[:, :2].astype(np.float32), arr[:, 2].astype(np.float32),
                                    arr[:, 3].astype(np.int64)))
    video_ids = sorted({it.info.source_video for it in items} | set(ground_truth))
    return data, classes, ground_truth, items, video_ids


def merged_rows(merged, keep_videos, with_item):
    rows = []
    for video, d in merged.items():
        if video not in keep_videos:
            continue
        for seg, score, label, item in zip(d["segments"].tolist(), d["scores"].tolist(), d["labels"].tolist(),
                                           d["items"]):
            rows.append([video, item, *seg, score, float(label)] if with_item else [video, *seg, score, float(label)])
    return rows


def check_expected(metrics, expected, classes):
    for key in METRIC_KEYS:
        np.testing.assert_allclose(metrics[key], expected[key], rtol=0, atol=1e-6, err_msg=key)
    assert metrics["iou_range"] == expected["iou_range"]
    assert metrics["AR_tiou_thresholds"] == expected["AR_tiou_thresholds"]
    per_class = np.array([metrics["ap_per_class"][c] for c in classes])
    np.testing.assert_allclose(per_class, expected["ap_per_class_per_tiou"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(per_class.mean(axis=1), expected["ap_per_class"], rtol=0, atol=1e-6)


@pytest.mark.fidelity
def test_thumos14_fixture(reference_dir):
    data, classes, gt, items, video_ids = load_fixture(reference_dir / "eval_thumos14.json")
    metrics, merged = evaluate_detections(items, gt, video_ids, classes, "Thumos14")
    check_expected(metrics, data["expected"], classes)
    assert metrics["window_fusion"] and metrics["eval_videos"] == "gt"
    # The merged table: same rows in the same order, duplicates of fusion included.
    assert data["merged_columns"] == ["video-id", "slice-id", "t-start", "t-end", "score", "cls"]
    rows = merged_rows(merged, set(gt), with_item=True)
    assert rows == data["merged_detections"]
    duplicates = sum(n - 1 for n in Counter(map(tuple, rows)).values())
    assert duplicates == sum(n - 1 for n in Counter(map(tuple, data["merged_detections"])).values()) > 0
    # The 10 windows of videos without GT are fused too but not scored.
    no_gt = set(video_ids) - set(gt)
    assert len(no_gt) == 10 and set(merged) >= no_gt
    assert metrics["num_detections_scored"] == len(data["merged_detections"])
    assert metrics["num_videos_with_gt"] == 50


@pytest.mark.fidelity
def test_anet_fixture_and_results_file_round_trip(reference_dir, tmp_path):
    data, classes, gt, items, video_ids = load_fixture(reference_dir / "eval_anet.json")
    metrics, merged = evaluate_detections(items, gt, video_ids, classes, "ActivityNet13")
    check_expected(metrics, data["expected"], classes)
    assert not metrics["window_fusion"]
    assert merged_rows(merged, set(gt), with_item=False) == data["merged_detections"]
    # Saved results re-score to the same numbers (ids lose their v_ prefix in the file and get it back).
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(results_json(merged, classes)))
    assert all(not k.startswith("v_") for k in json.loads(path.read_text())["results"])
    again = evaluate_merged(load_results_json(path, video_ids, classes), gt, video_ids, classes, "ActivityNet13")
    for key in METRIC_KEYS:
        assert again[key] == metrics[key], key


@pytest.mark.fidelity
def test_eval_videos_all_on_thumos_fixture(reference_dir):
    data, classes, gt, items, video_ids = load_fixture(reference_dir / "eval_thumos14.json")
    base, _ = evaluate_detections(items, gt, video_ids, classes, "Thumos14")
    every, _ = evaluate_detections(items, gt, video_ids, classes, "Thumos14", eval_videos="all")
    assert every["num_videos_evaluated"] == 60 and every["num_detections_dropped"] == 0
    assert every["num_detections_scored"] > base["num_detections_scored"]
    assert all(a < b for a, b in zip(every["mAP_per_tiou"], base["mAP_per_tiou"]))
    for key in ["AR@1", "AR@10", "AR@100", "AUC"]:  # AR is defined on GT videos in both modes
        assert every[key] == base[key]


# ------------------------------------------------------------------------------------------ tiny cases

def item(video, segments, scores, labels, source_video=None, **where):
    return ItemDetections(ItemInfo(video, source_video or video, 0.0, **where), np.asarray(segments, np.float32),
                          np.asarray(scores, np.float32), np.asarray(labels, np.int64))


CLASSES = ["a", "b"]
GT = {"v1": [(0.0, 10.0, "a"), (20.0, 30.0, "b")]}
VIDEOS = ["v1", "v2"]


def test_eval_videos_gt_drops_and_all_counts_videos_without_gt():
    items = [item("v1", [[0, 10], [20, 30]], [0.8, 0.7], [0, 1]), item("v2", [[0, 10]], [0.9], [0])]
    gt_mode, merged = evaluate_detections(items, GT, VIDEOS, CLASSES, "ActivityNet13")
    all_mode, _ = evaluate_detections(items, GT, VIDEOS, CLASSES, "ActivityNet13", eval_videos="all")
    assert gt_mode["ap_per_class"] == {"a": [1.0] * 10, "b": [1.0] * 10}
    # In "all", the v2 detection (score 0.9) is a false positive ranked before the class-a hit.
    assert all_mode["ap_per_class"]["a"] == [0.5] * 10 and all_mode["ap_per_class"]["b"] == [1.0] * 10
    assert all_mode["average_mAP"] == pytest.approx(0.75)
    assert gt_mode["num_detections_dropped"] == 1 and all_mode["num_detections_dropped"] == 0
    assert gt_mode["AR@100"] == all_mode["AR@100"] == 1.0
    assert set(merged) == {"v1", "v2"}  # kept for the results file either way


def test_window_items_are_shifted_and_fused():
    windows = [(0, 127), (96, 223)]
    items = [item("v1_w0", [[26.5 - 0.0, 30.5]], [0.6], [0], source_video="v1", window=windows[0],
                  feature_fps=3.75),
             item("v1_w1", [[26 - 25.6, 30 - 25.6], [0.0, 12.0]], [0.7, 0.5], [0, 0], source_video="v1",
                  window=windows[1], feature_fps=3.75, time_offset=25.6)]
    gt = {"v1": [(26.0, 30.0, "a")]}
    with pytest.warns(UserWarning, match=r"no ground truth for class\(es\) \['b'\]"):
        metrics, merged = evaluate_detections(items, gt, ["v1"], CLASSES, "Thumos14")
    # [26.5, 30.5] is suppressed by [26, 30] in the overlap; [25.6, 37.6] touches it too but has IoU 1/3
    # with [26, 30]: kept. Only GT class "a" exists -> AP of "b" undefined.
    np.testing.assert_allclose(merged["v1"]["segments"], [[26.0, 30.0], [25.6, 37.6]], atol=1e-5)
    assert merged["v1"]["items"] == ["v1_w1", "v1_w1"]
    assert metrics["ap_per_class"]["a"] == [1.0] * 5 and metrics["ap_per_class"]["b"] is None
    with pytest.warns(UserWarning, match="no ground truth"):
        unfused, merged2 = evaluate_detections(items, gt, ["v1"], CLASSES, "Thumos14", window_fusion=False)
    assert len(merged2["v1"]["scores"]) == 3 and not unfused["window_fusion"]


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("bad, message", [
    (item("v9", [[0, 1]], [0.5], [0]), "v9"),
    (item("v1", [[0, 1]], [0.5], [2]), "label outside"),
    (item("v1", [[3, 1]], [0.5], [0]), "end < start"),
    (item("v1", [[0, 1]], [np.nan], [0]), "NaN"),
    (item("v1", [[0, np.inf]], [0.5], [0]), "NaN or infinite"),
    (item("v1", [[0, 1, 2]], [0.5], [0]), "segments"),
])
def test_bad_detections_are_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        evaluate_detections([bad], GT, VIDEOS, CLASSES, "ActivityNet13")


def test_bad_ground_truth_and_settings_are_errors():
    good = [item("v1", [[0, 10]], [0.5], [0])]
    with pytest.raises(ValueError, match="'c' is not an evaluated class"):
        evaluate_detections(good, {"v1": [(0.0, 1.0, "c")]}, VIDEOS, CLASSES, "ActivityNet13")
    with pytest.raises(ValueError, match="not among the evaluated video_ids"):
        evaluate_detections(good, {"v3": [(0.0, 1.0, "a")]}, VIDEOS, CLASSES, "ActivityNet13")
    with pytest.raises(ValueError, match="no ground-truth instance"):
        evaluate_detections(good, {}, VIDEOS, CLASSES, "ActivityNet13")
    with pytest.raises(ValueError, match="eval_videos"):
        evaluate_detections(good, GT, VIDEOS, CLASSES, "ActivityNet13", eval_videos="some")
    with pytest.raises(ValueError, match="dataset_name"):
        evaluate_detections(good, GT, VIDEOS, CLASSES, "Kinetics")
    with pytest.raises(ValueError, match="window fusion needs"):
        evaluate_detections([item("v1", [[0, 1]], [0.5], [0], window=(0, 127)), item("v1b", [[0, 1]], [0.5], [0],
                             source_video="v1")], GT, VIDEOS, CLASSES, "Thumos14")


def test_no_detections_warns_and_scores_zero():
    with pytest.warns(UserWarning, match="no detections"):
        metrics, merged = evaluate_detections([item("v1", np.zeros((0, 2)), [], [])], GT, VIDEOS, CLASSES,
                                              "ActivityNet13")
    assert metrics["average_mAP"] == 0.0 and metrics["AR@100"] == 0.0 and merged == {}


def test_results_file_errors(tmp_path):
    def write(obj):
        path = tmp_path / "r.json"
        path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return path

    entry = {"segment": [0.0, 10.0], "score": 0.5, "label": "a"}
    cases = [
        ({"results": {}}, "holds no detections"),
        ({"results": {"v1": []}}, "holds no detections"),
        ({"result": {"v1": [entry]}}, "expected"),
        ("{not json", "not valid JSON"),
        ({"results": {"v7": [entry]}}, "not evaluated videos"),
        ({"results": {"v1": [{**entry, "label": "zzz"}]}}, "outside the evaluated classes"),
        ({"results": {"v1": [{"segment": [1.0], "score": 0.5, "label": "a"}]}}, r"results\['v1'\]\[0\]"),
        ({"results": {"v1": [{**entry, "score": None}]}}, "must be"),
    ]
    for obj, message in cases:
        with pytest.raises(ValueError, match=message):
            load_results_json(write(obj), VIDEOS, CLASSES)
    with pytest.raises(FileNotFoundError):
        load_results_json(tmp_path / "absent.json", VIDEOS, CLASSES)
    # NaN/inf values and reversed segments: errors naming the file and the entry
    for bad, message in [({"score": float("nan")}, "NaN or infinite"), ({"segment": [0.0, float("inf")]}, "NaN"),
                         ({"segment": [5, 1]}, "end < start"), ({"label": ["a"]}, "must be")]:
        with pytest.raises(ValueError, match=r"r\.json: results\['v1'\]\[1\].*" + message):
            load_results_json(write({"results": {"v1": [entry, {**entry, **bad}]}}), VIDEOS, CLASSES)
    # the same checks guard tables handed over in memory
    merged = load_results_json(write({"results": {"v1": [entry]}}), VIDEOS, CLASSES)
    merged["v1"]["scores"][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_merged(merged, GT, VIDEOS, CLASSES, "ActivityNet13")
    merged["v1"]["scores"][0], merged["v1"]["segments"][0] = 0.5, [5.0, 1.0]
    with pytest.raises(ValueError, match="end < start"):
        evaluate_merged(merged, GT, VIDEOS, CLASSES, "ActivityNet13")

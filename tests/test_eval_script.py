"""scripts/evaluate.py: re-scoring a results file from the annotation file, as training scores it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.evaluate import main
from tests.test_eval import METRIC_KEYS, check_expected, load_fixture
from utils.scoring.evaluation import evaluate_detections, results_json

REPO = Path(__file__).resolve().parents[1]


def write_results(path, merged, classes):
    path.write_text(json.dumps(results_json(merged, classes)))
    return str(path)


@pytest.mark.fidelity
@pytest.mark.parametrize("fixture, dataset, annotations", [
    ("eval_thumos14.json", "Thumos14", "gap_release/data/Thumos14/Thumos14_annotations.json"),
    ("eval_anet.json", "ActivityNet13", "fixtures/reference/anet13_annotations_rebuilt.json.gz"),
])
def test_script_reproduces_fixture_from_annotation_file(shared, reference_dir, tmp_path, fixture, dataset,
                                                        annotations):
    data, classes, gt, items, video_ids = load_fixture(reference_dir / fixture)
    _, merged = evaluate_detections(items, gt, video_ids, classes, dataset)
    pred = write_results(tmp_path / "detections.json", merged, classes)
    out = tmp_path / "metrics.json"
    argv = ["--gt", str(shared / annotations), "--pred", pred, "--dataset", dataset, "--split", "75",
            "--split_id", "0", "--split_root", str(shared / "gap_release" / "splits"), "--out", str(out)]
    metrics = main(argv)
    check_expected(metrics, data["expected"], classes)
    saved = json.loads(out.read_text())
    assert {"iou_range", "mAP_per_tiou", "average_mAP", "AUC", *METRIC_KEYS} <= set(saved)
    assert saved["average_mAP"] == metrics["average_mAP"] and saved["num_gt_instances"] == len(data["ground_truth"])
    # --eval_videos all: the Thumos14 file also holds the 10 fused videos without GT -> lower AP, same AR.
    every = main(argv[:-2] + ["--eval_videos", "all"])
    assert every["AR@100"] == metrics["AR@100"]
    if dataset == "Thumos14":
        assert every["average_mAP"] < metrics["average_mAP"] and every["num_videos_evaluated"] == 208


def tiny_annotations(tmp_path):
    database = {
        "video_test_0000001": {"subset": "test", "fps": 30.0, "annotations": [
            {"segment": [0.0, 10.0], "label": "A"}, {"segment": [5.0, 5.2], "label": "A"},  # 2nd: < 1 snippet
            {"segment": [20.0, 30.0], "label": "Ambiguous"}]},
        "video_test_0000002": {"subset": "test", "fps": 30.0, "annotations": [{"segment": [0.0, 5.0], "label": "C"}]},
        "video_test_0000270": {"subset": "test", "fps": 30.0, "annotations": [{"segment": [0.0, 5.0], "label": "A"}]},
        "video_validation_1": {"subset": "val", "fps": 30.0, "annotations": [{"segment": [0.0, 5.0], "label": "A"}]},
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"classes": ["A", "B", "C"], "database": database}))
    return str(path)


def test_script_on_tiny_annotation_file(tmp_path):
    gt = tiny_annotations(tmp_path)
    results = {"results": {
        "video_test_0000001": [{"segment": [0.0, 10.0], "score": 0.8, "label": "A"},
                               {"segment": [5.0, 5.2], "score": 0.7, "label": "A"}],
        "video_test_0000002": [{"segment": [0.0, 5.0], "score": 0.9, "label": "A"}],   # no GT of A/B there
        "video_test_0000270": [{"segment": [0.0, 5.0], "score": 0.95, "label": "A"}],  # excluded video
    }}
    pred = tmp_path / "r.json"
    pred.write_text(json.dumps(results))
    argv = ["--gt", gt, "--pred", str(pred), "--dataset", "Thumos14", "--classes", "A,B"]
    with pytest.warns(UserWarning) as caught:
        base = main(argv)
    messages = " | ".join(str(w.message) for w in caught)
    assert "video_test_0000270" in messages and "ignored" in messages and "class(es) ['B']" in messages
    # GT: one instance of A (the 0.2 s one is not longer than 8/30 s); B has none (warned, left out).
    assert base["num_gt_instances"] == 1 and base["ap_per_class"]["B"] is None
    # gt: 0000002 dropped -> TP then FP -> AP 1; all: its FP comes first -> AP 0.5.
    assert base["mAP_per_tiou"] == [1.0] * 5 and base["num_detections_dropped"] == 1
    with pytest.warns(UserWarning):
        every = main(argv + ["--eval_videos", "all"])
    assert every["mAP_per_tiou"] == [0.5] * 5 and every["num_videos_evaluated"] == 2
    # A smaller stride keeps the short instance: 2 GT, both hit.
    with pytest.warns(UserWarning):
        fine = main(argv + ["--feature_stride", "4"])
    assert fine["num_gt_instances"] == 2 and fine["AR@100"] == 1.0


def test_script_errors_are_clear(tmp_path):
    gt = tiny_annotations(tmp_path)
    pred = tmp_path / "r.json"
    pred.write_text(json.dumps({"results": {"video_test_0000099": [{"segment": [0, 1], "score": 0.5,
                                                                      "label": "A"}]}}))
    proc = subprocess.run([sys.executable, "scripts/evaluate.py", "--gt", gt, "--pred", str(pred), "--dataset",
                           "Thumos14", "--classes", "A"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "video_test_0000099" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ValueError, match="not in the annotation file"):
        main(["--gt", gt, "--pred", str(pred), "--dataset", "Thumos14", "--classes", "Nope"])
    with pytest.raises(SystemExit):
        main(["--gt", gt, "--pred", str(pred), "--dataset", "Thumos14"])  # neither --classes nor --split

"""scripts/diagnose.py on hand-made cases where every detection's error type and every miss's cause is known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scripts.diagnose import ERROR_TYPES, DiagnosisTable, label_detections, main, map_gains, mean_ap
from utils.scoring.evaluation import evaluate_merged

CLASSES = ["A", "B"]
GT = {"v1": [(10.0, 20.0, "A"), (40.0, 50.0, "A"), (70.0, 80.0, "B")]}
# (video, start, end, label, score, expected type at tIoU 0.5)
DETECTIONS = [
    ("v1", 10.0, 20.0, "A", 0.9, "true_positive"),
    ("v1", 10.5, 20.0, "A", 0.8, "double_detection"),   # tIoU 0.95 with the instance the 0.9 one took
    ("v1", 40.0, 50.0, "B", 0.7, "wrong_label"),        # exactly on an A instance
    ("v1", 40.0, 44.0, "A", 0.6, "localization"),       # tIoU 0.4 with an A instance
    ("v1", 10.0, 13.0, "B", 0.5, "confusion"),          # tIoU 0.3 with an A instance
    ("v1", 90.0, 95.0, "A", 0.4, "background"),
    ("v1", 70.0, 80.0, "B", 0.3, "true_positive"),
    ("v2", 5.0, 9.0, "A", 0.95, "background"),          # a video without ground truth (eval_videos all only)
]


def _merged(rows):
    merged = {}
    for vid, s, e, label, score, _ in rows:
        d = merged.setdefault(vid, {"segments": [], "scores": [], "labels": []})
        d["segments"].append((s, e))
        d["scores"].append(score)
        d["labels"].append(CLASSES.index(label))
    return {vid: {"segments": np.array(d["segments"]), "scores": np.array(d["scores"]),
                  "labels": np.array(d["labels"]), "items": [vid] * len(d["scores"])} for vid, d in merged.items()}


def _write_inputs(tmp_path, gt, rows, durations):
    database = {vid: {"subset": "test", "fps": 30.0, "duration": durations[vid],
                      "annotations": [{"segment": [s, e], "label": c} for s, e, c in gt.get(vid, [])]}
                for vid in durations}
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps({"classes": CLASSES, "database": database}))
    pred = tmp_path / "pred.json"
    results = {}
    for vid, s, e, label, score, _ in rows:
        results.setdefault(vid, []).append({"segment": [s, e], "label": label, "score": score})
    pred.write_text(json.dumps({"results": results}))
    return anno, pred


def test_each_detection_gets_its_error_type():
    rows = [r for r in DETECTIONS if r[0] == "v1"]
    det = DiagnosisTable(_merged(rows), GT, ["v1"], CLASSES)
    kind, matched, owner = label_detections(det, 0.5)
    assert [ERROR_TYPES[k] for k in kind] == [r[5] for r in rows]
    assert matched.tolist() == [True, False, True] and owner.tolist() == [0, -1, 6]
    # at tIoU 0.3 the tIoU-0.4 detection matches the free A instance and the tIoU-0.3 one is a wrong label
    kind, _, _ = label_detections(det, 0.3)
    assert ERROR_TYPES[kind[3]] == "true_positive" and ERROR_TYPES[kind[4]] == "wrong_label"


def test_map_gain_by_hand():
    rows = [r for r in DETECTIONS if r[0] == "v1"]
    det = DiagnosisTable(_merged(rows), GT, ["v1"], CLASSES)
    # A: TP, FP, FP, FP with 2 instances -> AP 0.5; B: FP, FP, TP with 1 instance -> AP 1/3
    assert mean_ap(det, 0.5) == pytest.approx((0.5 + 1 / 3) / 2)
    average, gains = map_gains(det, [0.5])
    gain = dict(zip(gains["error_type"], gains["gain"]))
    assert average == pytest.approx((0.5 + 1 / 3) / 2)
    assert gain["wrong_label"] == pytest.approx((0.5 + 1 / 2) / 2 - average)   # B: FP, TP -> 1/2
    assert gain["confusion"] == pytest.approx((0.5 + 1 / 2) / 2 - average)
    assert gain["double_detection"] == gain["localization"] == gain["background"] == pytest.approx(0.0)


def test_matching_agrees_with_the_evaluation_on_random_tables():
    rng = np.random.default_rng(0)
    videos = [f"v{k}" for k in range(6)]
    gt = {vid: [(float(s), float(s + rng.uniform(2, 15)), CLASSES[rng.integers(2)])
                for s in rng.uniform(0, 80, size=4)] for vid in videos}
    rows = [(vid, float(s), float(s + rng.uniform(1, 20)), CLASSES[rng.integers(2)], float(rng.uniform()), "")
            for vid in videos for s in rng.uniform(0, 90, size=30)]
    rows += [(vid, *gt[vid][0][:2], gt[vid][0][2], 0.5, "") for vid in videos]  # tied scores, exact hits
    det = DiagnosisTable(_merged(rows), gt, videos, CLASSES)
    for tiou in (0.3, 0.5, 0.7):
        kind, matched, _ = label_detections(det, tiou)
        tp = kind == ERROR_TYPES.index("true_positive")
        assert tp.sum() == matched.sum() > 0
        # false positives hold no instance: without them every class's AP is its recall
        only_tp = det.keep(tp)
        recall = [matched[det.gt_labels == c].mean() for c in range(2)]
        assert mean_ap(only_tp, tiou) == pytest.approx(np.mean(recall), abs=1e-6)
    # the average mAP the diagnosis starts from is scripts/evaluate.py's
    metrics = evaluate_merged(_merged(rows), gt, videos, CLASSES, "Synthetic")
    assert map_gains(det, metrics["iou_range"])[0] == pytest.approx(metrics["average_mAP"], abs=1e-12)


def test_script_tables_misses_and_figure(tmp_path, capsys):
    gt = {"v1": GT["v1"],
          "v3": [(60.0, 70.0, "A"), (62.0, 72.0, "A"), (5.0, 6.0, "B"), (20.0, 30.0, "B")]}
    rows = DETECTIONS + [
        ("v3", 61.0, 71.0, "A", 0.9, ""),    # tIoU 9/11 with both A instances: takes the later one (62-72)
        ("v3", 20.0, 23.0, "A", 0.2, ""),    # tIoU 0.3 with the B instance at 20-30: a loose proposal
    ]
    anno, pred = _write_inputs(tmp_path, gt, rows, {"v1": 100.0, "v2": 50.0, "v3": 400.0})
    out = tmp_path / "diag"
    args = ["--gt", str(anno), "--pred", str(pred), "--dataset", "Synthetic", "--classes", "A,B", "--out_dir", str(out)]
    summary = main(args)
    misses = summary["false_negatives"]
    assert misses["missed"] == 4 and summary["num_instances"] == 7
    # A 40-50 (B detection on it), A 60-70 (its detection went to 62-72), B 20-30 (loose A), B 5-6 (nothing)
    assert misses["causes"] == {"wrong_label": 1, "used_elsewhere": 1, "localization": 1, "not_proposed": 1}
    by_bin = {(r["characteristic"], r["bin"]): r for r in misses["by_bin"]}
    assert by_bin[("length", "XS")]["missed"] == 1 and by_bin[("length", "XS")]["not_proposed"] == 1   # 1 s
    assert by_bin[("length", "M")]["instances"] == 6 and by_bin[("length", "M")]["missed"] == 3
    assert by_bin[("coverage", "XL")]["instances"] == 3  # the 10 s instances of the 100 s video
    assert by_bin[("coverage", "XS")]["instances"] == 1  # 1 s of 400 s

    profile = {r["top"]: r for r in summary["false_positive_profile"]}
    # A has 4 instances, B 3: the top 1G are A's 4 best and B's 3 best (v2 is not scored with eval_videos gt)
    assert {k: profile["1G"][k] for k in ERROR_TYPES} == {
        "true_positive": 3, "double_detection": 1, "wrong_label": 1, "localization": 1, "confusion": 1,
        "background": 0}
    assert profile["10G"]["detections"] == summary["num_detections"] == 9
    for name in ("diagnosis.png", "diagnosis.json", "false_positives.csv", "map_gain.csv", "false_negatives.csv"):
        assert (out / name).stat().st_size > 0
    assert (out / "diagnosis.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "false_positives.csv").read_text().splitlines()[0] == "top,detections," + ",".join(ERROR_TYPES)
    assert "not proposed 1" in capsys.readouterr().out

    # eval_videos all: the v2 detection is a background error among A's top detections
    summary = main([*args, "--eval_videos", "all"])
    assert summary["num_detections"] == 10
    assert summary["false_positive_profile"][0]["background"] == 1


def test_split_root_follows_the_dataset(tmp_path, monkeypatch, capsys):
    """`--dataset Synthetic --split 75` reads data/Synthetic/splits (the demo's lists) without --split_root."""
    from datasets.splits import read_split_classes
    from scripts import evaluate
    from utils.engine.synthetic import ensure_synthetic_dataset

    monkeypatch.chdir(tmp_path)
    data = ensure_synthetic_dataset("data/Synthetic", seed=2, num_classes=8, num_train_videos=4, num_test_videos=16,
                                    min_length=60, max_length=80, feature_dim=8)
    classes = read_split_classes(data / "splits", "Synthetic", 75, 0, "inference")
    annotations = json.loads((data / "Synthetic_annotations.json").read_text())["database"]
    perfect = {vid: [{"segment": a["segment"], "label": a["label"], "score": 1.0} for a in entry["annotations"]
                     if a["label"] in classes]
               for vid, entry in annotations.items() if entry["subset"] == "test"}
    pred = tmp_path / "perfect.json"
    pred.write_text(json.dumps({"results": {vid: rows for vid, rows in perfect.items() if rows}}))
    args = ["--gt", str(data / "Synthetic_annotations.json"), "--pred", str(pred), "--dataset", "Synthetic",
            "--split", "75", "--split_id", "0"]
    assert evaluate.main(args)["average_mAP"] == pytest.approx(1.0)
    summary = main([*args, "--out_dir", str(tmp_path / "diag")])
    assert summary["classes"] == classes and summary["false_negatives"]["missed"] == 0
    assert summary["false_positive_profile"][0]["true_positive"] == summary["num_instances"]
    # the release's layout is still the default for the other datasets
    with pytest.raises(FileNotFoundError, match="splits"):
        evaluate.main([*args[:5], "Thumos14", *args[6:]])

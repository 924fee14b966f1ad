"""--eval_proposal end to end (class-agnostic proposals scored by actionness, one "foreground" class) and the
"DETR + class-agnostic localization head" ablation (no --enable_classAgnostic, --actionness_loss) training."""
from __future__ import annotations

import json

import pytest

import main as train_main
import test as test_main
from tests.test_end_to_end import tiny_config  # noqa: F401 - the shared tiny synthetic run configuration

pytestmark = pytest.mark.slow


def test_eval_proposal_reports_class_agnostic_metrics(tiny_config, tmp_path):  # noqa: F811
    args = ["--cfg_path", str(tiny_config), "--model_name", "prop", "--output_root", str(tmp_path),
            "--eval_proposal", "--epochs", "1", "--save_result"]
    best = train_main.main(args)["best"]["test"]
    for key in ("average_mAP", "AR@10", "AR@100", "AUC"):
        assert 0.0 <= best[key] <= 1.0, key
    assert best["average_mAP"] > 0 and best["AR@100"] > 0
    detections = json.loads((tmp_path / "results/Synthetic/prop/detection_test_0_raw.json").read_text())
    labels = {d["label"] for dets in detections["results"].values() for d in dets}
    assert labels == {"foreground"}
    metrics = test_main.main(args[:-4] + ["--eval_proposal", "--save_result"])
    assert metrics["average_mAP"] == pytest.approx(best["average_mAP"], abs=1e-9)
    tested = json.loads((tmp_path / "results/Synthetic/prop/detection_test_-1_raw.json").read_text())
    assert {d["label"] for dets in tested["results"].values() for d in dets} == {"foreground"}


def test_detr_ablation_trains_with_loss_ce(tiny_config, tmp_path):  # noqa: F811
    result = train_main.main(["--cfg_path", str(tiny_config), "--model_name", "detr", "--output_root",
                              str(tmp_path), "--no-enable_classAgnostic", "--actionness_loss", "--epochs", "1"])
    log = (tmp_path / "logs/Synthetic/detr.log").read_text()
    assert "epoch 0 train losses" in log and " loss_ce " in log and " loss_actionness " in log
    assert result["best"]["test"]["average_mAP"] >= 0

"""Score a saved detection file against the release's annotations (no model needed).

    python scripts/evaluate.py --gt data/Thumos14/Thumos14_annotations.json \
        --pred results/Thumos14/<model>/detection_test_-1_raw.json --dataset Thumos14 \
        --split 75 --split_id 0 --out metrics.json
    python scripts/evaluate.py --gt ANNOTATIONS.json --pred DETECTIONS.json --dataset ActivityNet13 \
        --classes "Archery,Zumba" --eval_videos all

Detections use the ActivityNet results format written by main.py / test.py:
{"results": {video: [{"segment": [start, end], "score": x, "label": class name}, ...]}} (video ids may
lack ActivityNet's `v_` prefix). Ground truth is filtered exactly as the datasets filter it (test-class,
non-Ambiguous instances longer than one snippet for Thumos14, > 1 s for ActivityNet; Thumos14's excluded
videos). The scoring is the one training and test.py use (utils/scoring/evaluation.py).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.annotations import ground_truth_from, load_annotation_file, load_feature_info  # noqa: E402
from datasets.families import FAMILIES, DatasetFamily, family_of  # noqa: E402
from datasets.splits import read_split_classes  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.engine.report import AR_KEYS, metrics_table  # noqa: E402
from utils.io import atomic_write_json, check_writable_location  # noqa: E402
from utils.scoring.evaluation import EVAL_VIDEOS, evaluate_merged, load_results_json  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser)
    parser.add_argument("--out", default=None, help="write the metrics (fractions) to this JSON file")
    return parser


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the ground truth, classes and detections (shared with scripts/diagnose.py)."""
    parser.add_argument("--gt", required=True, help="annotation JSON of the release (.json or .json.gz)")
    parser.add_argument("--pred", required=True, help="detections in the ActivityNet results format")
    parser.add_argument("--dataset", required=True, choices=sorted(FAMILIES),
                        help="sets the tIoU thresholds, AR tIoUs and ground-truth filters")
    classes = parser.add_mutually_exclusive_group(required=True)
    classes.add_argument("--classes", help="comma-separated evaluated class names (class index = position)")
    classes.add_argument("--split", type=int, choices=(75, 50), help="zero-shot split: evaluate its test classes")
    parser.add_argument("--split_id", type=int, default=0, help="split list id (0..9)")
    parser.add_argument("--split_root", default=None, help="folder holding train_75_test_25/ ... (default: "
                        "./data/Synthetic/splits for Synthetic, else ./splits)")
    parser.add_argument("--subset", default=None,
                        help="annotation subset to score (default: test for Thumos14, val for ActivityNet13)")
    parser.add_argument("--feature_info", default=None,
                        help="feature-info JSON: keep only videos it lists and take their fps from it, as the "
                             "datasets do (default: all subset videos, fps from the annotation file)")
    parser.add_argument("--feature_stride", type=int, default=None,
                        help="frames per snippet; Thumos14 drops GT instances not longer than stride/fps "
                             "(default: 8 for Thumos14, 16 for ActivityNet13, the headline values)")
    parser.add_argument("--eval_videos", default="gt", choices=EVAL_VIDEOS,
                        help="gt: score only videos with ground truth (the original); all: detections on "
                             "every subset video count, false positives where there is no ground truth")


def video_sets(annotations: dict, info: dict | None, subset: str, rules: DatasetFamily) -> tuple[list[str], set[str]]:
    """(evaluated, ignored) videos of the subset.

    Evaluated: every subset video the datasets may use (not excluded, listed in --feature_info when given),
    i.e. the inference videos plus, for ActivityNet13 (whose datasets drop them), the subset videos without
    ground truth of the evaluated classes, so that `--eval_videos all` can count their detections. Ignored:
    listed in the subset but never evaluated (Thumos14's hard-coded exclusions, videos absent from
    --feature_info); their detections are dropped with a warning. Any other video is an error.
    """
    listed = {vid for vid, entry in annotations["database"].items() if entry["subset"] == subset}
    evaluated = {vid for vid in listed if vid not in rules.excluded_videos and (info is None or vid in info)}
    return sorted(evaluated), listed - evaluated


@dataclass
class ScoringInputs:
    """What the flags of `add_input_arguments` select, read and checked."""

    classes: list[str]
    ground_truth: dict
    evaluated: list[str]
    merged: dict
    annotations: dict
    subset: str
    stride: int


def load_inputs(args: argparse.Namespace) -> ScoringInputs:
    rules = family_of(args.dataset)
    if args.classes is not None:
        classes = [name.strip() for name in args.classes.split(",") if name.strip()]
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"--classes must list distinct class names, got {args.classes!r}")
    else:
        split_root = args.split_root or rules.default_split_root
        classes = read_split_classes(split_root, args.dataset, args.split, args.split_id, "inference")
    subset = args.subset or rules.subsets["inference"]
    stride = args.feature_stride or rules.default_stride
    annotations = load_annotation_file(args.gt)
    info = load_feature_info(args.feature_info) if args.feature_info is not None else None
    ground_truth, _ = ground_truth_from(annotations, info, classes, subset, rules, stride, args.gt,
                                        args.feature_info or "(no info file)")
    evaluated, ignored = video_sets(annotations, info, subset, rules)
    merged = load_results_json(args.pred, set(evaluated) | ignored, classes)
    skipped = sorted(set(merged) & ignored)
    if skipped:
        warnings.warn(f"{args.pred}: detections of {len(skipped)} video(s) that the datasets never evaluate "
                      f"(excluded or absent from the feature info) are ignored: {skipped[:5]}", stacklevel=2)
        merged = {vid: d for vid, d in merged.items() if vid not in ignored}
    return ScoringInputs(classes, ground_truth, evaluated, merged, annotations, subset, stride)


def main(argv: list[str] | None = None) -> dict:
    args = get_parser().parse_args(argv)
    if args.out is not None:  # checked before the (long) scoring, and named as the flag
        if Path(args.out).is_dir():
            raise IsADirectoryError(f"--out {args.out} is a folder; expected the path of the metrics JSON to write")
        check_writable_location(Path(args.out).parent, "--out")
    inputs = load_inputs(args)
    classes, ground_truth, evaluated, merged = inputs.classes, inputs.ground_truth, inputs.evaluated, inputs.merged
    subset, stride = inputs.subset, inputs.stride
    metrics = evaluate_merged(merged, ground_truth, evaluated, classes, args.dataset, eval_videos=args.eval_videos)
    metrics.update({"gt_file": str(args.gt), "pred_file": str(args.pred), "subset": subset,
                    "feature_stride": stride, "feature_info": args.feature_info})
    print(f"{args.pred}: {metrics['num_detections_scored']} detections scored on {metrics['num_videos_evaluated']} "
          f"videos (eval_videos={args.eval_videos}, {metrics['num_detections_dropped']} dropped on videos without "
          f"ground truth); {metrics['num_gt_instances']} GT instances of {len(classes)} classes in "
          f"{metrics['num_videos_with_gt']} videos")
    print(metrics_table(metrics, f"{args.dataset} {subset}", ar_keys=AR_KEYS + ("AUC",)))
    if args.out:
        try:
            atomic_write_json(args.out, metrics, indent=2)
        except OSError as error:
            raise OSError(f"--out {args.out}: cannot write the metrics ({error.strerror or error})") from error
        print(f"metrics written to {args.out}")
    return metrics


def cli(argv: list[str] | None = None) -> int:
    warnings.simplefilter("default")
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())

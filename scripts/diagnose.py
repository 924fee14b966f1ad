"""Where a detector errs: the false-positive and false-negative analysis of Alwassel et al., "Diagnosing Error
in Temporal Action Detectors" (ECCV 2018), on any results file this project writes.

    python scripts/diagnose.py --gt data/Synthetic/Synthetic_annotations.json \
        --pred results/Synthetic/demo/detection_test_11_raw.json --dataset Synthetic --split 75 --split_id 0

Ground truth, classes and detections are chosen and read exactly as scripts/evaluate.py reads them (same
flags, same filters). Written from the paper's definitions (no code of its tool is used):

False positives. Per class, detections are ranked by score and matched greedily to ground truth exactly as
the mAP evaluation matches them (each instance at most once, highest tIoU first). At tIoU threshold a (0.5
for the tables and the figure) every detection gets one label, tested in this order:
  true positive     matched to an instance of its class with tIoU >= a;
  double detection  tIoU >= a with an instance of its class, but those were matched by higher-scored ones;
  wrong label       tIoU >= a with an instance of another class;
  localization      its class, 0.1 <= best tIoU < a;
  confusion         another class, 0.1 <= best tIoU < a;
  background        tIoU < 0.1 with every instance (every detection on a video without ground truth, with
                    --eval_videos all).
The profile counts the labels among each class's top k*G detections (G = the class's number of instances,
k = 1..10, as the paper's 1G..10G), summed over classes. The mAP gain of an error type is the average mAP
over the dataset's tIoU thresholds after removing the detections of that type (labelled at each threshold),
minus the average mAP of the file as it is (which equals scripts/evaluate.py's).

False negatives. An instance no detection of its class matches at tIoU a is missed; misses are grouped by
the instance's length (seconds; XS <= 3 < S <= 6 < M <= 12 < L <= 18 < XL) and coverage (length / video
duration; XS <= 0.02 < S <= 0.04 < M <= 0.06 < L <= 0.08 < XL), the paper's bins, and by cause, which for
zero-shot runs tells proposals and CLIP classification apart:
  wrong label       a detection of another class has tIoU >= a (the segment was proposed, misnamed);
  used elsewhere    a detection of its class has tIoU >= a but was matched to another instance;
  localization      the best detection of any class reaches 0.1 <= tIoU < a (proposals too loose);
  not proposed      no detection reaches tIoU 0.1.

Writes into --out_dir (default: beside the results file, <name>_diagnosis/): diagnosis.json (everything),
false_positives.csv, map_gain.csv, false_negatives.csv and diagnosis.png (profile bars, pie of the false
positives in the top 1G, mAP gains, miss rates).
"""
from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from datasets.families import family_of  # noqa: E402
from scripts.evaluate import add_input_arguments, load_inputs  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from utils.scoring.metrics import (  # noqa: E402
    average_precision,
    descending_score_order,
    evaluation_tiou,  # noqa: E402
    pairs_with_equal_keys,
)

ERROR_TYPES = ("true_positive", "double_detection", "wrong_label", "localization", "confusion", "background")
FALSE_POSITIVES = ERROR_TYPES[1:]
MISS_CAUSES = ("wrong_label", "used_elsewhere", "localization", "not_proposed")
LOW_TIOU = 0.1  # below it a detection touches no instance (the paper's background threshold)
LENGTH_BINS = (("XS", 0, 3), ("S", 3, 6), ("M", 6, 12), ("L", 12, 18), ("XL", 18, np.inf))  # seconds
COVERAGE_BINS = (("XS", 0, 0.02), ("S", 0.02, 0.04), ("M", 0.04, 0.06), ("L", 0.06, 0.08), ("XL", 0.08, np.inf))
COLOURS = {"true_positive": "#4daf4a", "double_detection": "#984ea3", "wrong_label": "#ff7f00",
           "localization": "#377eb8", "confusion": "#a65628", "background": "#e41a1c"}


# ------------------------------------------------------------------------------------------------ tables

class DiagnosisTable:
    """Flat arrays of a merged table and its ground truth: video index, segments, scores, labels."""

    def __init__(self, merged: dict, ground_truth: dict, videos: list[str], classes: list[str]):
        index = {vid: k for k, vid in enumerate(videos)}
        rows = [(index[vid], d) for vid, d in merged.items() if vid in index]
        self.video = np.concatenate([np.full(len(d["scores"]), k, np.int64) for k, d in rows]
                                    or [np.zeros(0, np.int64)])
        self.segments = np.concatenate([np.asarray(d["segments"], np.float64).reshape(-1, 2) for _, d in rows]
                                       or [np.zeros((0, 2))])
        self.scores = np.concatenate([np.asarray(d["scores"], np.float64) for _, d in rows] or [np.zeros(0)])
        self.labels = np.concatenate([np.asarray(d["labels"], np.int64) for _, d in rows] or [np.zeros(0, np.int64)])
        class_index = {c: i for i, c in enumerate(classes)}
        gt = [(index[vid], s, e, class_index[name]) for vid, inst in sorted(ground_truth.items()) if vid in index
              for s, e, name in inst]
        self.gt_video = np.array([g[0] for g in gt], np.int64)
        self.gt_segments = np.array([(g[1], g[2]) for g in gt], np.float64).reshape(-1, 2)
        self.gt_labels = np.array([g[3] for g in gt], np.int64)
        self.videos, self.classes = videos, classes

    def __len__(self) -> int:
        return len(self.scores)

    def keep(self, mask: np.ndarray) -> DiagnosisTable:
        out = object.__new__(DiagnosisTable)
        out.__dict__.update(self.__dict__)
        out.video, out.segments, out.scores, out.labels = (self.video[mask], self.segments[mask], self.scores[mask],
                                                           self.labels[mask])
        return out


def _best_tiou(pred_index: np.ndarray, gt_index: np.ndarray, iou: np.ndarray, n: int) -> np.ndarray:
    best = np.zeros(n)
    np.maximum.at(best, pred_index, iou)
    return best


def label_detections(det: DiagnosisTable, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label index into ERROR_TYPES per detection, GT matched [n_gt], detection matched to each GT or -1).

    The matching is the evaluation's: per class in descending score order (ties in table order), each
    detection takes the unmatched instance of its video and class with the highest tIoU >= alpha (ties: the
    instance listed later), as utils/metrics.average_precision does.
    """
    n, num_classes = len(det), len(det.classes)
    order = descending_score_order(det.scores, det.labels)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    # same video and class, tIoU >= alpha: greedy assignment in score order
    ip, ig = pairs_with_equal_keys(det.video * num_classes + det.labels, det.gt_video * num_classes + det.gt_labels)
    same_iou = evaluation_tiou(det.segments[ip], det.gt_segments[ig])
    hit = same_iou >= alpha
    pref = np.lexsort((-ig[hit], -same_iou[hit], rank[ip[hit]]))
    owner = np.full(len(det.gt_labels), -1, np.int64)
    assigned = np.zeros(n, bool)
    for p, g in zip(ip[hit][pref].tolist(), ig[hit][pref].tolist()):
        if not assigned[p] and owner[g] < 0:
            owner[g], assigned[p] = p, True
    has_same_hit = np.zeros(n, bool)
    has_same_hit[ip[hit]] = True
    best_same = _best_tiou(ip, ig, same_iou, n)
    # other classes in the same video
    jp, jg = pairs_with_equal_keys(det.video, det.gt_video)
    other = det.labels[jp] != det.gt_labels[jg]
    other_iou = evaluation_tiou(det.segments[jp[other]], det.gt_segments[jg[other]])
    best_other = _best_tiou(jp[other], jg[other], other_iou, n)

    kind = np.full(n, ERROR_TYPES.index("background"), np.int64)
    kind[best_other >= LOW_TIOU] = ERROR_TYPES.index("confusion")
    kind[best_same >= LOW_TIOU] = ERROR_TYPES.index("localization")
    kind[best_other >= alpha] = ERROR_TYPES.index("wrong_label")
    kind[has_same_hit] = ERROR_TYPES.index("double_detection")
    kind[assigned] = ERROR_TYPES.index("true_positive")
    return kind, owner >= 0, owner


def false_positive_profile(det: DiagnosisTable, kind: np.ndarray, multiples=range(1, 11)) -> pd.DataFrame:
    """Counts of each label among every class's top k*G detections (rows: k), summed over classes."""
    num_classes = len(det.classes)
    npos = np.bincount(det.gt_labels, minlength=num_classes)
    order = descending_score_order(det.scores, det.labels)
    # rank of each detection inside its class
    sorted_labels = det.labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(num_classes))
    class_rank = np.empty(len(det), np.int64)
    class_rank[order] = np.arange(len(det)) - starts[sorted_labels]
    rows = []
    for k in multiples:
        top = class_rank < k * npos[det.labels]
        counts = np.bincount(kind[top], minlength=len(ERROR_TYPES))
        rows.append({"top": f"{k}G", "detections": int(top.sum()), **dict(zip(ERROR_TYPES, counts.tolist()))})
    return pd.DataFrame(rows)


def mean_ap(det: DiagnosisTable, tiou: float) -> float:
    """mAP at one tIoU over the classes with ground truth (as utils/evaluation scores it)."""
    ap = average_precision(det.video, det.segments, det.scores, det.labels, det.gt_video, det.gt_segments,
                           det.gt_labels, len(det.classes), [tiou])[:, 0]
    return float(np.nanmean(ap))


def map_gains(det: DiagnosisTable, tious) -> tuple[float, pd.DataFrame]:
    """(average mAP as is, table of the average mAP after removing each false-positive type and the gain)."""
    base, removed = [], {t: [] for t in FALSE_POSITIVES}
    for tiou in tious:
        kind, _, _ = label_detections(det, tiou)
        base.append(mean_ap(det, tiou))
        for name in FALSE_POSITIVES:
            removed[name].append(mean_ap(det.keep(kind != ERROR_TYPES.index(name)), tiou))
    average = float(np.mean(base))
    rows = [{"error_type": name, "average_mAP_without": float(np.mean(values)),
             "gain": float(np.mean(values)) - average} for name, values in removed.items()]
    return average, pd.DataFrame(rows)


def _bin_of(values: np.ndarray, bins) -> np.ndarray:
    names = np.array([b[0] for b in bins] + ["unknown"], dtype=object)
    index = np.full(len(values), len(bins))
    for k, (_, low, high) in enumerate(bins):
        index[(values > low) & (values <= high)] = k
    return names[index]


def false_negatives(det: DiagnosisTable, matched: np.ndarray, alpha: float,
                    durations: dict[str, float]) -> pd.DataFrame:
    """One row per instance: length, coverage, their bins, missed, and the cause of a miss."""
    n_gt = len(det.gt_labels)
    ig, ip = pairs_with_equal_keys(det.gt_video, det.video)
    iou = evaluation_tiou(det.segments[ip], det.gt_segments[ig])
    same = det.labels[ip] == det.gt_labels[ig]
    best_any = _best_tiou(ig, ip, iou, n_gt)
    other_hit = np.zeros(n_gt, bool)
    other_hit[ig[~same & (iou >= alpha)]] = True
    same_hit = np.zeros(n_gt, bool)
    same_hit[ig[same & (iou >= alpha)]] = True
    cause = np.full(n_gt, "", dtype=object)
    missed = ~matched
    cause[missed] = "not_proposed"
    cause[missed & (best_any >= LOW_TIOU)] = "localization"
    cause[missed & same_hit] = "used_elsewhere"
    cause[missed & other_hit] = "wrong_label"
    length = det.gt_segments[:, 1] - det.gt_segments[:, 0]
    duration = np.array([durations.get(det.videos[v], np.nan) for v in det.gt_video], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(duration > 0, length / duration, np.nan)
    return pd.DataFrame({"video": [det.videos[v] for v in det.gt_video],
                         "label": [det.classes[c] for c in det.gt_labels],
                         "start": det.gt_segments[:, 0], "end": det.gt_segments[:, 1], "length_s": length,
                         "coverage": coverage, "length_bin": _bin_of(length, LENGTH_BINS),
                         "coverage_bin": _bin_of(coverage, COVERAGE_BINS), "missed": missed, "cause": cause})


def miss_table(instances: pd.DataFrame) -> pd.DataFrame:
    """Miss rate and causes per length bin and per coverage bin (bins without instances are left out)."""
    rows = []
    for characteristic, column, bins in (("length", "length_bin", LENGTH_BINS),
                                         ("coverage", "coverage_bin", COVERAGE_BINS)):
        for name in [b[0] for b in bins] + ["unknown"]:
            group = instances[instances[column] == name]
            if not len(group):
                continue
            causes = group["cause"].value_counts()
            rows.append({"characteristic": characteristic, "bin": name, "instances": len(group),
                         "missed": int(group["missed"].sum()), "miss_rate": float(group["missed"].mean()),
                         **{c: int(causes.get(c, 0)) for c in MISS_CAUSES}})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ figure

def plot_diagnosis(profile: pd.DataFrame, gains: pd.DataFrame, misses: pd.DataFrame, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9), gridspec_kw={"width_ratios": [1.5, 1, 1, 1.3]})
    ax = axes[0]
    fractions = profile[list(ERROR_TYPES)].div(profile["detections"].clip(lower=1), axis=0) * 100
    bottom = np.zeros(len(profile))
    for name in ERROR_TYPES:
        ax.bar(profile["top"], fractions[name], bottom=bottom, color=COLOURS[name], label=name.replace("_", " "))
        bottom += fractions[name].to_numpy()
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of the top detections")
    ax.set_title("false-positive profile (top kG per class)")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=len(ERROR_TYPES), fontsize=8, frameon=False)

    ax = axes[1]
    first = profile.iloc[0][list(FALSE_POSITIVES)].astype(float)
    if first.sum() > 0:
        shown = first[first > 0]
        ax.pie(shown, labels=[f"{n.replace('_', ' ')}\n{100 * v / first.sum():.0f}%" for n, v in shown.items()],
               colors=[COLOURS[n] for n in shown.index], textprops={"fontsize": 7}, startangle=90)
    ax.set_title("false positives in the top 1G")

    ax = axes[2]
    values = gains["gain"].to_numpy() * 100
    ax.barh([n.replace("_", " ") for n in gains["error_type"]], values, color=[COLOURS[n] for n in gains["error_type"]])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("average-mAP gain when removed (points)")
    ax.set_title("impact of each error type")
    ax.set_xlim(0, max(values.max() * 1.3, 0.1) if len(values) else 1)

    ax = axes[3]
    labels, rates, colours = [], [], []
    for characteristic, colour in (("length", "#377eb8"), ("coverage", "#ff7f00")):
        part = misses[misses["characteristic"] == characteristic]
        labels += [f"{characteristic[:3]} {b}" for b in part["bin"]]
        rates += list(part["miss_rate"] * 100)
        colours += [colour] * len(part)
    ax.bar(range(len(rates)), rates, color=colours)
    ax.set_xticks(range(len(rates)), labels, rotation=60, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of instances missed")
    ax.set_title("false negatives by length / coverage")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ main

def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser)
    parser.add_argument("--tiou", type=float, default=0.5, help="tIoU threshold of the tables and the figure")
    parser.add_argument("--out_dir", default=None, help="output folder (default: <pred without .json>_diagnosis)")
    return parser


def diagnose(det: DiagnosisTable, durations: dict[str, float], tious, alpha: float) -> dict:
    """Every table of the analysis (pandas DataFrames) and the summary numbers."""
    kind, matched, _ = label_detections(det, alpha)
    profile = false_positive_profile(det, kind)
    average, gains = map_gains(det, tious)
    instances = false_negatives(det, matched, alpha, durations)
    return {"profile": profile, "gains": gains, "instances": instances, "misses": miss_table(instances),
            "average_mAP": average, "kind": kind}


def main(argv: list[str] | None = None) -> dict:
    args = get_parser().parse_args(argv)
    if not 0 < args.tiou <= 1:
        raise SystemExit(f"error: --tiou must be in (0, 1], got {args.tiou}")
    inputs = load_inputs(args)
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.pred).with_suffix("").with_name(
        Path(args.pred).stem + "_diagnosis")
    with_gt = sorted(inputs.ground_truth)
    videos = inputs.evaluated if args.eval_videos == "all" else with_gt
    det = DiagnosisTable(inputs.merged, inputs.ground_truth, videos, inputs.classes)
    if not len(det.gt_labels):
        raise ValueError("no ground-truth instance of the evaluated classes: nothing to diagnose")
    durations = {vid: float(entry.get("duration", np.nan)) for vid, entry in inputs.annotations["database"].items()}
    result = diagnose(det, durations, family_of(args.dataset).tiou_thresholds, args.tiou)
    profile, gains, misses, instances = result["profile"], result["gains"], result["misses"], result["instances"]

    missed = instances[instances["missed"]]
    causes = missed["cause"].value_counts()
    summary = {
        "pred_file": str(args.pred), "gt_file": str(args.gt), "dataset": args.dataset, "subset": inputs.subset,
        "classes": inputs.classes, "eval_videos": args.eval_videos, "tiou": args.tiou,
        "num_detections": len(det), "num_instances": int(len(instances)),
        "average_mAP": result["average_mAP"],
        "false_positive_profile": profile.to_dict(orient="records"),
        "map_gain": gains.to_dict(orient="records"),
        "false_negatives": {"missed": int(len(missed)), "miss_rate": float(instances["missed"].mean()),
                            "causes": {c: int(causes.get(c, 0)) for c in MISS_CAUSES},
                            "by_bin": misses.to_dict(orient="records")},
    }
    title = (f"{Path(args.pred).name}: {len(det)} detections, {len(instances)} instances of {len(inputs.classes)} "
             f"classes; average mAP {100 * result['average_mAP']:.2f}; labels at tIoU {args.tiou}")
    png = plot_diagnosis(profile, gains, misses, title)
    # all outputs are computed before the first file is written
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "false_positives.csv", profile.to_csv(index=False))
    atomic_write_text(out_dir / "map_gain.csv", gains.to_csv(index=False))
    atomic_write_text(out_dir / "false_negatives.csv", misses.to_csv(index=False))
    atomic_write_json(out_dir / "diagnosis.json", summary, indent=2)
    atomic_write_bytes(out_dir / "diagnosis.png", png)

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(title)
        print("\nfalse-positive profile (counts among each class's top kG detections)")
        print(profile.to_string(index=False))
        print("\naverage mAP after removing each error type (points)")
        print((gains.set_index("error_type") * 100).round(2).to_string())
        print(f"\nfalse negatives at tIoU {args.tiou}: {len(missed)} of {len(instances)} instances missed; causes: "
              + ", ".join(f"{c.replace('_', ' ')} {int(causes.get(c, 0))}" for c in MISS_CAUSES))
        print(misses.to_string(index=False))
    print(f"\nwrote {out_dir}/diagnosis.png, diagnosis.json, false_positives.csv, map_gain.csv, false_negatives.csv")
    return summary


def cli(argv: list[str] | None = None) -> int:
    warnings.simplefilter("default")
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())

"""Time the evaluator on one core: THUMOS14-test-sized detections and a 10x larger set.

    python scripts/bench_eval.py [--repeats 5] [--seed 0]

Cases (random detections, a third of them jittered copies of ground truth so that matching has work to do):
- videos: 213 videos x 100 detections as whole-video items, 5 classes, ground truth in 50 videos
  (778 instances, the size of THUMOS14 75:25 split 0), and the same 10x larger;
- windows: the real inference shape of THUMOS14 (1,758 windows of 128 snippets x 100 detections over 208
  videos, cross-window fusion on).
Each is timed with eval_videos "gt" (the original's video set) and "all"; the best of --repeats is printed.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets.items import ItemInfo  # noqa: E402
from datasets.windows import sliding_windows  # noqa: E402
from utils.scoring.evaluation import ItemDetections, evaluate_detections  # noqa: E402

CLASSES = ["c0", "c1", "c2", "c3", "c4"]
FFPS = 3.75  # 30 fps / stride 8
SLICE_SIZE, INFERENCE_OVERLAP = 128, 0.25  # the headline THUMOS14 inference windows (stride 96)


def make_ground_truth(rng, videos, durations, n_gt_videos, n_instances):
    gt_videos = rng.choice(len(videos), n_gt_videos, replace=False)
    owner = gt_videos[rng.integers(0, n_gt_videos, n_instances)]
    length = rng.uniform(1.0, 12.0, n_instances)
    start = rng.uniform(0, 1, n_instances) * np.maximum(durations[owner] - length, 0)
    label = rng.integers(0, len(CLASSES), n_instances)
    gt: dict[str, list] = {}
    for v, s, ln, c in zip(owner, start, length, label):
        gt.setdefault(videos[v], []).append((float(s), float(s + ln), CLASSES[c]))
    return gt


def random_detections(rng, n, span, gt_rows):
    """n detections inside [0, span] seconds; about a third are jittered copies of gt_rows (in the span)."""
    start = rng.uniform(0, span, n)
    seg = np.stack([start, np.minimum(start + rng.uniform(0.5, 15, n), span)], axis=1)
    labels = rng.integers(0, len(CLASSES), n)
    if gt_rows:
        pick = rng.integers(0, len(gt_rows), n // 3)
        base = np.array([gt_rows[i][:2] for i in pick])
        seg[: n // 3] = np.clip(base + rng.normal(0, 0.8, base.shape), 0, span)
        seg[: n // 3].sort(axis=1)
        labels[: n // 3] = [CLASSES.index(gt_rows[i][2]) for i in pick]
    scores = np.sort(rng.uniform(0, 1, n).astype(np.float32))[::-1]
    return seg.astype(np.float32), scores.copy(), labels


def video_case(rng, n_videos, per_video=100, n_gt_videos=50, n_instances=778):
    videos = [f"video_{i:05d}" for i in range(n_videos)]
    durations = rng.uniform(30, 400, n_videos)
    gt = make_ground_truth(rng, videos, durations, n_gt_videos, n_instances)
    items = []
    for v, dur in zip(videos, durations):
        seg, sc, lab = random_detections(rng, per_video, dur, gt.get(v, []))
        items.append(ItemDetections(ItemInfo(v, v, float(dur)), seg, sc, lab))
    return items, gt, videos


def window_case(rng, n_videos=208, per_window=100, target_windows=1758):
    videos = [f"video_{i:05d}" for i in range(n_videos)]
    # Snippet lengths drawn so that the total number of windows is close to THUMOS14's 1,758.
    lengths = rng.gamma(2.0, 1.0, n_videos)
    lengths = np.maximum((lengths / lengths.sum() * target_windows * 96).astype(int), 60)
    durations = lengths / FFPS
    gt = make_ground_truth(rng, videos, durations, 50, 778)
    items = []
    for v, length in zip(videos, lengths):
        for s, e in sliding_windows(int(length), SLICE_SIZE, INFERENCE_OVERLAP, full_tail=False).tolist():
            off, dw = s / FFPS, (e - s) / FFPS
            local = [(a - off, b - off, c) for a, b, c in gt.get(v, []) if a < off + dw and b > off]
            seg, sc, lab = random_detections(rng, per_window, dw, local)
            items.append(ItemDetections(ItemInfo(f"{v}_window_{s}_{e}", v, dw, off, (s, e), FFPS), seg, sc, lab))
    return items, gt, videos


def best_time(repeats, fn, *args, **kwargs):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cases = [
        ("THUMOS14-test size: 213 videos x 100", video_case(rng, 213)),
        ("10x: 2130 videos x 100", video_case(rng, 2130, n_gt_videos=500, n_instances=7780)),
        ("THUMOS14 windows: ~1758 x 100, fusion", window_case(rng)),
    ]
    print(f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, best of {args.repeats}")
    print(f"{'case':40s} {'items':>6s} {'dets':>7s} {'mode':>4s} {'scored':>7s} {'seconds':>8s}  avg mAP")
    for name, (items, gt, videos) in cases:
        n_dets = sum(len(it.scores) for it in items)
        for mode in ("gt", "all"):
            seconds, (metrics, _) = best_time(args.repeats, evaluate_detections, items, gt, videos, CLASSES,
                                              "Thumos14", eval_videos=mode)
            print(f"{name:40s} {len(items):6d} {n_dets:7d} {mode:>4s} {metrics['num_detections_scored']:7d} "
                  f"{seconds:8.3f}  {100 * metrics['average_mAP']:.2f}")


if __name__ == "__main__":
    main()

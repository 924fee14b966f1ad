"""AP and AR@AN: hand-computed tiny cases and a check of the vectorised code against a plain loop."""
from __future__ import annotations

import numpy as np
import pytest

from utils.scoring.metrics import (
    average_precision,
    average_recall,
    greedy_match,
    interpolated_ap,
    pairs_with_equal_keys,
)
from utils.scoring.metrics import (
    evaluation_tiou as segment_iou,
)


def ap_of(preds, gts, num_classes=1, tious=(0.5,)):
    """preds: (video, start, end, score, label); gts: (video, start, end, label)."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1, 5)
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    return average_precision(p[:, 0].astype(int), p[:, 1:3], p[:, 3], p[:, 4].astype(int),
                             g[:, 0].astype(int), g[:, 1:3], g[:, 3].astype(int), num_classes, tious)


# ------------------------------------------------------------------------------------------ AP by hand

def test_perfect_detections_give_one():
    gts = [(0, 0, 10, 0), (0, 20, 30, 0), (1, 5, 6, 0)]
    preds = [(v, s, e, 0.9 - 0.1 * k, c) for k, (v, s, e, c) in enumerate(gts)]
    assert ap_of(preds, gts, tious=(0.5, 0.95)).tolist() == [[1.0, 1.0]]


def test_duplicate_is_false_positive():
    gts = [(0, 0, 10, 0)]
    # Second copy of the same box: the GT is locked, so it is a FP, but it comes after the TP (rank 2):
    # precision envelope at recall 1 is 1 -> AP stays 1. Put the duplicate first by score instead:
    # rank 1 TP, rank 2 FP -> AP 1; and a FP *before* the TP: rank 1 FP, rank 2 TP -> AP 0.5.
    assert ap_of([(0, 0, 10, 0.9, 0), (0, 0, 10, 0.8, 0)], gts)[0, 0] == 1.0
    assert ap_of([(0, 50, 60, 0.9, 0), (0, 0, 10, 0.8, 0), (0, 0, 10, 0.7, 0)], gts)[0, 0] == 0.5
    # Two GT, three detections on the first GT then one on the second: ranks TP FP FP TP.
    gts2 = [(0, 0, 10, 0), (0, 20, 30, 0)]
    preds = [(0, 0, 10, 0.9, 0), (0, 0, 10, 0.8, 0), (0, 1, 10, 0.7, 0), (0, 20, 30, 0.6, 0)]
    # recall 0.5 at precision 1, recall 1 at precision 2/4 -> 0.5 * 1 + 0.5 * 0.5
    assert ap_of(preds, gts2)[0, 0] == pytest.approx(0.75, abs=1e-7)


def test_threshold_equal_to_iou_is_a_match():
    gts = [(0, 0, 2, 0)]
    preds = [(0, 0, 1, 0.9, 0)]  # IoU exactly 0.5
    assert ap_of(preds, gts, tious=(0.5, 0.50001)).tolist() == [[1.0, 0.0]]


def test_class_without_detections_gets_zero_and_without_gt_nan():
    gts = [(0, 0, 10, 0), (0, 0, 10, 1)]
    ap = ap_of([(0, 0, 10, 0.9, 0)], gts, num_classes=3)
    assert ap[0, 0] == 1.0 and ap[1, 0] == 0.0 and np.isnan(ap[2, 0])


def test_detection_on_video_without_gt_of_its_class_is_false_positive():
    gts = [(0, 0, 10, 0), (1, 0, 10, 1)]
    # video 1 has GT of class 1 only: the class-0 detection there (score 0.95) is a FP ranked first.
    ap = ap_of([(1, 0, 10, 0.95, 0), (0, 0, 10, 0.9, 0)], gts, num_classes=2)
    assert ap[0, 0] == 0.5


def test_tied_scores_keep_table_order():
    gts = [(0, 0, 10, 0)]
    fp_first = ap_of([(0, 50, 60, 0.5, 0), (0, 0, 10, 0.5, 0)], gts)[0, 0]
    tp_first = ap_of([(0, 0, 10, 0.5, 0), (0, 50, 60, 0.5, 0)], gts)[0, 0]
    assert (fp_first, tp_first) == (0.5, 1.0)


def test_each_gt_matched_once_best_iou_first():
    # Two GTs; the top detection overlaps both, more with the second -> takes the second; the next one can
    # still take the first. Exercise the "locked GT: try the next" branch too.
    gts = [(0, 0, 10, 0), (0, 4, 14, 0)]
    preds = [(0, 3, 13, 0.9, 0), (0, 2, 12, 0.8, 0)]
    # p0: IoU with g0 = 7/13, with g1 = 9/11 -> takes g1; p1: g1 locked, g0 IoU 8/12 -> TP.
    assert ap_of(preds, gts)[0, 0] == 1.0
    # At 0.6, p0 takes g1 (0.818); p1: g1 locked, g0 IoU 0.667 -> TP; at 0.7 p1 is a FP.
    assert ap_of(preds, gts, tious=(0.6, 0.7)).tolist() == [[1.0, 0.5]]


def test_interpolated_ap_envelope():
    prec = np.array([[1.0, 0.5, 2 / 3, 0.5]])
    rec = np.array([[0.25, 0.25, 0.5, 0.5]])
    # envelope: recall 0.25 -> max(1, ...) = 1; recall 0.5 -> 2/3; rest (to recall 1) precision 0.
    assert interpolated_ap(prec, rec)[0] == pytest.approx(0.25 * 1 + 0.25 * 2 / 3)


# ------------------------------------------------------------------------------------------ AR by hand

def test_ar_tiny():
    # One video, 2 GT; proposals by score: a miss, a hit of GT 1, a hit of GT 0.
    gt_v = np.array([0, 0])
    gt_s = np.array([[0.0, 10.0], [20.0, 30.0]])
    pv = np.array([0, 0, 0])
    ps = np.array([[50.0, 60.0], [20.0, 30.0], [0.0, 10.0]])
    out = average_recall(pv, ps, np.array([0.9, 0.8, 0.7]), gt_v, gt_s, [0.5])
    # All 3 proposals kept (ratio 100/3); curve point j allows int(3 * j/100 * 100/3) proposals.
    budget = np.minimum((3 * (np.arange(1, 101) / 100.0 * (100.0 / 3))).astype(int), 3)
    want = np.select([budget >= 3, budget == 2], [1.0, 0.5], 0.0)
    np.testing.assert_array_equal(out["avg_recall"], want)
    assert out["AR@1"] == 0.0 and out["AR@5"] == 1.0


def test_ar_at_budget_and_threshold_one():
    gt_v = np.array([0, 1])
    gt_s = np.array([[0.0, 10.0], [0.0, 10.0]])
    pv = np.array([0, 1])
    ps = np.array([[0.0, 10.0], [0.0, 9.0]])
    out = average_recall(pv, ps, np.array([0.5, 0.5]), gt_v, gt_s, [0.5, 1.0])
    # budget: 100 per video but only 1 proposal each: from AR@1 on, video 0 recalled at both tIoUs,
    # video 1 only at 0.5 (IoU 0.9): recall (2/2 + 1/2) / 2.
    assert out["AR@1"] == out["AR@100"] == pytest.approx(0.75)
    # x-axis: proposals per video = j/100 * 100 * 2 / 2 -> AUC = trapz over [1, 100] / 100
    assert out["AUC"] == pytest.approx(0.75 * 99 / 100)


def test_ar_video_without_proposals_and_no_proposals():
    gt_v = np.array([0, 1])
    gt_s = np.array([[0.0, 10.0], [0.0, 10.0]])
    out = average_recall(np.array([0]), np.array([[0.0, 10.0]]), np.array([1.0]), gt_v, gt_s, [0.5])
    # ratio = 100 * 2 / 1 -> video 0 keeps its proposal; video 1 recalls nothing -> 0.5 from x = 1 on.
    assert out["AR@100"] == 0.5
    empty = average_recall(np.zeros(0, int), np.zeros((0, 2)), np.zeros(0), gt_v, gt_s, [0.5])
    assert empty["AR@100"] == 0.0 and empty["AUC"] == 0.0


# ----------------------------------------------------------------------------- against a plain loop

def reference_ap(preds, gts, num_classes, tious):
    """The original's loop: per class, per detection, per threshold, GT visited by tIoU descending."""
    ap = np.zeros((num_classes, len(tious)))
    for c in range(num_classes):
        gc = [g for g in gts if g[3] == c]
        pc = [p for p in preds if p[4] == c]
        if not gc:
            ap[c] = np.nan
            continue
        if not pc:
            continue
        order = sorted(range(len(pc)), key=lambda i: (-pc[i][3], i))
        lock = np.full((len(tious), len(gc)), -1)
        tp = np.zeros((len(tious), len(pc)))
        fp = np.zeros((len(tious), len(pc)))
        for rank, i in enumerate(order):
            p = pc[i]
            idx = [j for j, g in enumerate(gc) if g[0] == p[0]]
            if not idx:
                fp[:, rank] = 1
                continue
            seg = np.array([gc[j][1:3] for j in idx], dtype=float)
            ious = segment_iou(np.tile(np.array(p[1:3], float), (len(idx), 1)), seg)
            srt = np.argsort(ious, kind="stable")[::-1]
            for t, thr in enumerate(tious):
                for s in srt:
                    if ious[s] < thr:
                        break
                    if lock[t, idx[s]] >= 0:
                        continue
                    tp[t, rank] = 1
                    lock[t, idx[s]] = rank
                    break
                fp[t, rank] = 1 - tp[t, rank]
        tpc = np.cumsum(tp, axis=1).astype(np.float32)
        fpc = np.cumsum(fp, axis=1).astype(np.float32)
        ap[c] = interpolated_ap(tpc / (tpc + fpc), tpc / np.float32(len(gc)))
    return ap


def random_case(rng, n_videos, n_pred, n_gt, num_classes, quantum=1.0):
    def segs(n):
        s = np.round(rng.uniform(0, 40, n) / quantum) * quantum
        return s, s + np.round(rng.uniform(0.5, 12, n) / quantum) * quantum + quantum
    ps, pe = segs(n_pred)
    gs, ge = segs(n_gt)
    scores = np.round(rng.uniform(0, 1, n_pred), 2)  # coarse: many ties
    preds = [(int(v), float(s), float(e), float(sc), int(c)) for v, s, e, sc, c in
             zip(rng.integers(0, n_videos, n_pred), ps, pe, scores, rng.integers(0, num_classes, n_pred))]
    gts = [(int(v), float(s), float(e), int(c)) for v, s, e, c in
           zip(rng.integers(0, n_videos, n_gt), gs, ge, rng.integers(0, num_classes, n_gt))]
    return preds, gts


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_ap_equals_plain_loop(seed):
    rng = np.random.default_rng(seed)
    num_classes = 3
    tious = (0.1, 0.3, 0.5, 0.7, 0.9)
    preds, gts = random_case(rng, n_videos=4, n_pred=150, n_gt=25, num_classes=num_classes)
    got = ap_of(preds, gts, num_classes, tious)
    want = reference_ap(preds, gts, num_classes, tious)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-12)


def test_greedy_match_equals_serial_picking():
    rng = np.random.default_rng(3)
    n_agents, n_items = 40, 15
    prefs = [list(rng.permutation(n_items)[: rng.integers(0, 6)]) for _ in range(n_agents)]
    agent = np.array([a for a, p in enumerate(prefs) for _ in p], dtype=np.int64)
    item = np.array([i for p in prefs for i in p], dtype=np.int64)
    taken, want = set(), np.zeros(n_agents, bool)
    for a, p in enumerate(prefs):
        for i in p:
            if i not in taken:
                taken.add(i)
                want[a] = True
                break
    np.testing.assert_array_equal(greedy_match(agent, item, n_agents), want)


def reference_ar(pv, ps, sc, gv, gs, tious):
    """The original's AR@AN loop (per video, per threshold, per budget)."""
    videos = list(dict.fromkeys(gv.tolist()))
    ratio = 100 * float(len(videos)) / len(pv)
    scores, total = [], 0
    for v in videos:
        g = gs[gv == v]
        p, s = ps[pv == v], sc[pv == v]
        if len(p) == 0:
            scores.append(np.zeros((len(g), 1)))
            continue
        p = p[np.argsort(-s, kind="stable")]
        n = min(int(len(p) * ratio), len(p))
        total += n
        p = p[:n]
        scores.append(np.array([[segment_iou(p[k:k + 1], g[i:i + 1])[0] for k in range(n)]
                                for i in range(len(g))]).reshape(len(g), n))
    pcn = np.arange(1, 101) / 100.0 * (100 * float(len(videos)) / total)
    recall = np.empty((len(tious), len(pcn)))
    for t, thr in enumerate(tious):
        matches = np.zeros((len(videos), len(pcn)))
        for i, s in enumerate(scores):
            budget = np.minimum((s.shape[1] * pcn).astype(int), s.shape[1])
            for j, k in enumerate(budget):
                matches[i, j] = np.count_nonzero((s[:, :k] >= thr).sum(axis=1))
        recall[t] = matches.sum(axis=0) / sum(s.shape[0] for s in scores)
    return recall.mean(axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_ar_equals_plain_loop(seed):
    rng = np.random.default_rng(10 + seed)
    preds, gts = random_case(rng, n_videos=5, n_pred=300, n_gt=30, num_classes=1)
    gv = np.array([g[0] for g in gts])
    gs = np.array([g[1:3] for g in gts])
    keep = np.isin([p[0] for p in preds], gv)  # AR takes proposals of GT videos only
    p = np.array(preds)[keep]
    tious = np.linspace(0.5, 1.0, 11)
    out = average_recall(p[:, 0].astype(int), p[:, 1:3], p[:, 3], gv, gs, tious)
    np.testing.assert_allclose(out["avg_recall"], reference_ar(p[:, 0].astype(int), p[:, 1:3], p[:, 3], gv, gs,
                                                               tious), rtol=0, atol=1e-12)


def test_pairs_with_equal_keys():
    ia, ib = pairs_with_equal_keys(np.array([2, 0, 2]), np.array([2, 1, 2, 0]))
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 0), (0, 2), (1, 3), (2, 0), (2, 2)]

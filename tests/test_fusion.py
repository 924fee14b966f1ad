"""Thumos14 cross-window fusion (SPEC §8.3, Appendix B item 7) and its NMS."""
from __future__ import annotations

import numpy as np

from utils.scoring.fusion import cross_window_fusion, overlap_regions, suppressed_by_nms

FFPS = 3.75
WINDOWS = [(0, 127), (96, 223), (192, 250)]  # inference windows of a 251-snippet video


def fuse(dets, windows=WINDOWS, video_of_item=None):
    """dets: (item, start, end, score, label) in video seconds."""
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    item = d[:, 0].astype(int)
    video_of_item = np.zeros(len(windows), int) if video_of_item is None else np.asarray(video_of_item)
    return cross_window_fusion(video_of_item[item], item, d[:, 1:3], d[:, 3], d[:, 4].astype(int),
                               video_of_item, np.array([w[0] for w in windows]),
                               np.array([w[1] for w in windows]), np.full(len(windows), FFPS))


def test_appendix_b_item_7():
    a, b, c, d, e = range(5)
    dets = [(0, 10, 12, 0.9, 0), (1, 20, 60, 0.8, 0), (1, 26, 30, 0.7, 0), (0, 26.5, 30.5, 0.6, 0),
            (2, 62, 64, 0.5, 0)]
    assert fuse(dets).tolist() == [b, c, b, a, e]


def test_regions_of_appendix_b():
    video, r0, r1, cur, nxt = overlap_regions(np.zeros(3, int), np.array([0.0, 96, 192]), np.array([127.0, 223, 250]),
                                              np.full(3, FFPS), np.ones(3, bool))
    np.testing.assert_allclose(np.c_[r0, r1], [[25.6, 127 / 3.75], [51.2, 223 / 3.75]])
    assert cur.tolist() == [0, 1] and nxt.tolist() == [1, 2]


def test_nms_is_per_class_and_only_in_overlaps():
    dets = [(1, 26, 30, 0.7, 0), (0, 26.5, 30.5, 0.6, 1),   # different classes: both kept
            (0, 5, 9, 0.5, 0), (0, 5, 9, 0.4, 0)]          # identical, but outside every overlap region
    assert fuse(dets).tolist() == [0, 1, 2, 3]


def test_single_window_video_untouched_and_video_order():
    # Video 1 has one window (item 3) listed first; video 0 has the three windows.
    windows = WINDOWS + [(0, 127)]
    dets = [(3, 1, 2, 0.1, 0), (3, 1, 2, 0.9, 0), (1, 26, 30, 0.7, 0), (0, 26.5, 30.5, 0.6, 0)]
    assert fuse(dets, windows, video_of_item=np.array([0, 0, 0, 1])).tolist() == [2, 0, 1]


def test_window_without_detections_is_skipped():
    # Only windows 0 and 2 have detections: their "overlap" [51.2, 33.87] is empty, nothing is fused.
    dets = [(0, 26, 30, 0.7, 0), (2, 52, 55, 0.6, 0), (2, 52, 55, 0.5, 0)]
    assert fuse(dets).tolist() == [0, 1, 2]


def test_nms_threshold_is_strict_and_intersection_unclamped():
    seg = np.array([[0.0, 10.0], [6.0, 16.0], [5.0, 15.0], [20.0, 21.0]])
    # IoU(0,1) = 4/16 = 0.25; IoU(0,2) = 5/15 = 1/3; IoU(1,2) = 9/11 > 0.4 -> 2 suppressed by 1? 1 is kept
    # (0.25 with 0) and has the higher score than 2, so 2 goes. Segment 3 is disjoint: kept.
    sup = suppressed_by_nms(np.zeros(4, int), seg, np.array([0.9, 0.8, 0.7, 0.6]))
    assert sup.tolist() == [False, False, True, False]
    # Exactly 0.4 is not > 0.4: kept. [0,10] vs [0,4]: IoU 0.4.
    assert not suppressed_by_nms(np.zeros(2, int), np.array([[0.0, 10.0], [0.0, 4.0]]), np.array([1.0, 0.5])).any()
    # A suppressed row does not suppress others: 0 removes 1, and 1 would have removed 2.
    seg = np.array([[0.0, 10.0], [3.0, 13.0], [7.0, 17.0]])
    assert suppressed_by_nms(np.zeros(3, int), seg, np.array([0.9, 0.8, 0.7])).tolist() == [False, True, False]


def reference_fusion(dets, windows):
    """SPEC §8.3 written as loops; dets: (item, start, end, score, label) of one video."""
    used = sorted({int(d[0]) for d in dets}, key=lambda i: windows[i][0])
    out, touched = [], set()
    for cur, nxt in zip(used[:-1], used[1:]):
        r0, r1 = windows[nxt][0] / FFPS, windows[cur][1] / FFPS
        inside = [k for k, d in enumerate(dets) if min(d[2], r1) - max(d[1], r0) > 0]
        touched.update(inside)
        kept = []
        for label in sorted({dets[k][4] for k in inside}):
            cand = sorted((k for k in inside if dets[k][4] == label), key=lambda k: (-dets[k][3], k))
            while cand:
                best, cand = cand[0], cand[1:]
                kept.append(best)
                s0, e0 = dets[best][1:3]
                cand = [k for k in cand if (min(e0, dets[k][2]) - max(s0, dets[k][1]))
                        / ((e0 - s0) + (dets[k][2] - dets[k][1]) - (min(e0, dets[k][2]) - max(s0, dets[k][1])))
                        <= 0.4]
        out += sorted(kept, key=lambda k: (-dets[k][3], k))
    return out + [k for k in range(len(dets)) if k not in touched]


def test_fusion_equals_plain_loops_on_random_windows():
    rng = np.random.default_rng(0)
    windows = [(i * 96, i * 96 + 127) for i in range(6)] + [(576, 640)]
    for _ in range(5):
        dets = []
        for w, (s, e) in enumerate(windows):
            for _ in range(25):
                a = rng.uniform(s, e) / FFPS
                dets.append((w, a, min(a + rng.uniform(0.2, 12), e / FFPS), float(rng.uniform()), int(rng.integers(3))))
        dets = [d for d in dets if rng.uniform() < 0.9]  # some windows lose detections, order stays
        assert fuse(dets, windows).tolist() == reference_fusion(dets, windows)

"""Thumos14 cross-window fusion of sliding-window detections (SPEC §8.3, quirk 24: KEEP).

For each video with detections from more than one window, windows are sorted by start index and every
consecutive pair (cur, next) defines an overlap region [next_start / ffps, cur_end / ffps] seconds. For each
region, all detections of the video touching it (min(end, r1) - max(start, r0) > 0) go through per-class
hard NMS (threshold 0.4) and the survivors are emitted, sorted by score. Detections touching no region are
emitted unchanged after them. A detection touching two regions is processed twice and may be emitted twice:
the original does so and its AP/AR count both rows.
"""
from __future__ import annotations

import numpy as np

from utils.scoring.metrics import pairs_with_equal_keys

NMS_THRESHOLD = 0.4


def _touches(t0, t1, r0, r1) -> np.ndarray:
    return (np.minimum(t1, r1) - np.maximum(t0, r0)) > 0


def overlap_regions(item_video, item_start, item_end, item_fps, item_used):
    """Regions between consecutive used windows of each video.

    Returns (region_video, r0, r1, cur_item, next_item), ordered by video, then window start.
    """
    idx = np.flatnonzero(item_used)
    order = idx[np.lexsort((item_start[idx], item_video[idx]))]
    same = item_video[order][1:] == item_video[order][:-1]
    cur, nxt = order[:-1][same], order[1:][same]
    r0 = item_start[nxt] / item_fps[nxt]
    r1 = item_end[cur] / item_fps[cur]
    return item_video[cur], r0, r1, cur, nxt


def suppressed_by_nms(group, segments, scores, threshold: float = NMS_THRESHOLD) -> np.ndarray:
    """Greedy hard NMS inside each group (all groups at once). Returns a bool mask of suppressed rows.

    In each group rows are visited by score descending (ties: earlier row first); a kept row removes later
    rows whose IoU with it is > threshold. IoU = (min end - max start) / (len_i + len_j - that), the
    intersection NOT clamped, so disjoint segments never suppress each other.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=bool)
    group = np.asarray(group)
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64), group))
    seg = np.asarray(segments, dtype=np.float64)[order]
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], n]
    group_end = np.repeat(ends, ends - starts)
    sup = np.zeros(n, dtype=bool)  # in sorted order
    # Step r settles the rank-r row of every group: its possible suppressors (lower ranks) are all final.
    for r in range(int((ends - starts).max())):
        pos = starts[ends - starts > r] + r
        pos = pos[~sup[pos]]
        later = group_end[pos] - pos - 1
        pos, later = pos[later > 0], later[later > 0]
        if not len(pos):
            continue
        a = np.repeat(pos, later)
        b = np.arange(len(a)) - np.repeat(np.cumsum(later) - later - pos - 1, later)
        inter = np.minimum(seg[a, 1], seg[b, 1]) - np.maximum(seg[a, 0], seg[b, 0])
        union = (seg[a, 1] - seg[a, 0]) + (seg[b, 1] - seg[b, 0]) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            over = inter / union > threshold  # NaN (two equal points) compares False: both kept
        sup[b[over]] = True
    suppressed = np.empty(n, dtype=bool)
    suppressed[order] = sup
    return suppressed


def cross_window_fusion(det_video, det_item, segments, scores, labels,
                        item_video, item_start, item_end, item_fps,
                        threshold: float = NMS_THRESHOLD) -> np.ndarray:
    """Row indices of the fused table (duplicates possible), in the original's order.

    det_*: one entry per detection (video-level seconds, i.e. already shifted by the window offset);
    item_*: one entry per window (video index, inclusive start/end snippet index, feature fps).
    Output order: videos ascending; inside a video, the NMS survivors of each region (region order, score
    descending, ties by row), then the untouched detections in input row order.
    """
    n = len(scores)
    det_video = np.asarray(det_video, dtype=np.int64)
    det_item = np.asarray(det_item, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    item_video = np.asarray(item_video)
    n_items = len(item_video)
    used = np.bincount(det_item, minlength=n_items) > 0
    reg_video, r0, r1, _, _ = overlap_regions(item_video, np.asarray(item_start, np.float64),
                                              np.asarray(item_end, np.float64), np.asarray(item_fps, np.float64), used)
    n_reg = len(r0)

    # Candidate (window, region) pairs: the region overlaps the extent of that window's detections.
    ext0 = np.full(n_items, np.inf)
    ext1 = np.full(n_items, -np.inf)
    np.minimum.at(ext0, det_item, segments[:, 0])
    np.maximum.at(ext1, det_item, segments[:, 1])
    items_used = np.flatnonzero(used)
    wi, wr = pairs_with_equal_keys(item_video[items_used], reg_video)
    wi = items_used[wi]
    near = _touches(ext0[wi], ext1[wi], r0[wr], r1[wr])
    wi, wr = wi[near], wr[near]
    # Exact (detection, region) touches among those candidates.
    dd, k = pairs_with_equal_keys(det_item, wi)
    dr = wr[k]
    touch = _touches(segments[dd, 0], segments[dd, 1], r0[dr], r1[dr])
    dd, dr = dd[touch], dr[touch]

    untouched = np.ones(n, dtype=bool)
    untouched[dd] = False
    rest = np.flatnonzero(untouched)
    sup = suppressed_by_nms(dr * (int(labels.max(initial=0)) + 1) + labels[dd], segments[dd], scores[dd],
                            threshold)
    dd, dr = dd[~sup], dr[~sup]

    rows = np.concatenate([dd, rest])
    video = np.concatenate([reg_video[dr], det_video[rest]])
    part = np.concatenate([np.zeros(len(dd), np.int64), np.ones(len(rest), np.int64)])
    region = np.concatenate([dr, np.full(len(rest), n_reg, np.int64)])
    neg_score = np.concatenate([-scores[dd], np.zeros(len(rest))])
    order = np.lexsort((rows, neg_score, region, part, video))
    return rows[order]

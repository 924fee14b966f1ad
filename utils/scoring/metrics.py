"""Detection metrics of the paper: interpolated AP per class and tIoU, and AR@AN with its AUC.

Both follow the ActivityNet evaluation code that the original evaluator wraps (SPEC §8.4, §8.5), including
the arithmetic that changes numbers: float32 recall/precision, the reversed-ascending score sort, the
per-video proposal budget of AR@AN and its integer truncations. The work is vectorised over all
(video, class) groups; Python loops run over classes, thresholds or matching rounds, never over detections.

Inputs are flat arrays: `*_video` integer video indices, `*_segments` float [n, 2] (start, end) seconds,
`pred_scores` float [n], `*_labels` integer class indices.
"""
from __future__ import annotations

import numpy as np

AR_AT = (1, 5, 10, 25, 40, 50, 100)
MAX_AVG_PROPOSALS = 100  # the original's max_avg_nr_proposals; the curve has 100 points


def pairs_with_equal_keys(key_a: np.ndarray, key_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j) with key_a[i] == key_b[j]; grouped by i (ascending), then j ascending."""
    key_a = np.asarray(key_a)
    key_b = np.asarray(key_b)
    order_b = np.argsort(key_b, kind="stable")
    sorted_b = key_b[order_b]
    lo = np.searchsorted(sorted_b, key_a, side="left")
    counts = np.searchsorted(sorted_b, key_a, side="right") - lo
    total = int(counts.sum())
    ia = np.repeat(np.arange(len(key_a)), counts)
    first = np.cumsum(counts) - counts
    pos = np.arange(total) - np.repeat(first - lo, counts)
    return ia, order_b[pos]


def evaluation_tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Element-wise tIoU of aligned rows, as ActivityNet's `segment_iou` (no +1, intersection clipped at 0).
    (utils.segment_ops.segment_iou, the training-side IoU, leaves a zero union undefined instead.)

    union = len(gt) + len(pred) - intersection, in that order. A zero union (two equal points) gives 0.
    """
    inter = (np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0])).clip(0)
    union = (gt[:, 1] - gt[:, 0]) + (pred[:, 1] - pred[:, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(union > 0, iou, 0.0)


def descending_score_order(scores: np.ndarray, *group_keys: np.ndarray) -> np.ndarray:
    """Row order by group keys (ascending, first key most significant), then score descending.

    Tied scores keep their table order (earlier row first). The original's `argsort()[::-1]` over a
    quicksort leaves the order of ties to numpy's sorting internals; the reference fixtures agree with
    this rule (a tie in ActivityNet class "Using parallel bars" changes its AP at tIoU 0.9 by 2e-5).
    """
    n = len(scores)
    keys = [np.arange(n), -np.asarray(scores, dtype=np.float64)]
    keys += [np.asarray(k) for k in reversed(group_keys)]
    return np.lexsort(keys)


def greedy_match(agent: np.ndarray, item: np.ndarray, n_agents: int) -> np.ndarray:
    """Serial-dictatorship matching of agents to items, computed in parallel rounds.

    `agent`, `item`: candidate pairs sorted by agent, each agent's pairs in its order of preference. Agent ids
    double as priorities (lower id chooses first among agents that compete for the same item).
    Processing agents one by one in id order, each taking its most preferred free item, is the original's
    greedy loop; with one common priority order over agents, agent-proposing deferred acceptance has that
    same (unique stable) outcome, and its rounds vectorise. Returns a bool [n_agents] "matched".
    """
    matched = np.zeros(n_agents, dtype=bool)
    if len(agent) == 0:
        return matched
    starts = np.flatnonzero(np.r_[True, agent[1:] != agent[:-1]])
    listed = agent[starts]  # ascending agent ids = ascending priority order
    ends = np.r_[starts[1:], len(agent)]
    ptr = starts.copy()
    n_items = int(item.max()) + 1
    holder = np.full(n_items, -1, dtype=np.int64)  # index into `listed`
    won = np.zeros(len(listed), dtype=bool)
    free = np.arange(len(listed))
    while free.size:
        wanted = item[ptr[free]]
        order = np.lexsort((free, wanted))
        wanted, proposer = wanted[order], free[order]
        best = np.r_[True, wanted[1:] != wanted[:-1]]
        cand_item, cand = wanted[best], proposer[best]
        current = holder[cand_item]
        wins = (current < 0) | (cand < current)
        holder[cand_item[wins]] = cand[wins]
        displaced = current[wins & (current >= 0)]
        won[:] = False
        won[cand[wins]] = True
        rejected = np.concatenate([free[~won[free]], displaced])
        ptr[rejected] += 1
        free = rejected[ptr[rejected] < ends[rejected]]
    matched[listed[holder[holder >= 0]]] = True
    return matched


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """All-point interpolated AP per row of [T, n] precision/recall (VOC-2011 style, not 11-point).

    Pads precision with 0 at both ends and recall with 0 and 1, makes precision non-increasing from the
    right and sums (r_i - r_{i-1}) * p_i where recall changes. Computed in float64 like the original (its
    hstack with integer padding promotes the float32 inputs).
    """
    rows = precision.shape[0]
    zeros = np.zeros((rows, 1))
    mprec = np.hstack([zeros, precision.astype(np.float64), zeros])
    mrec = np.hstack([zeros, recall.astype(np.float64), np.ones((rows, 1))])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    step = mrec[:, 1:] - mrec[:, :-1]
    return np.where(step != 0, step * mprec[:, 1:], 0.0).sum(axis=1)


def average_precision(pred_video, pred_segments, pred_scores, pred_labels,
                      gt_video, gt_segments, gt_labels, num_classes: int, tiou_thresholds) -> np.ndarray:
    """Interpolated AP [num_classes, n_tiou] (SPEC §8.4); NaN for a class without ground truth.

    Per class: detections sorted by score (descending); each takes, at every threshold, the unmatched
    ground truth of its video and class with the highest tIoU >= threshold (each GT matched once), else it
    is a false positive (also when its video has no GT of that class). Ties in tIoU between two GT go to the
    one listed later (the original's reversed sort). A threshold equal to the tIoU counts as a match.
    cumTP/cumFP are float32 like the original's, so recall/precision are float32 quotients.
    """
    tious = np.asarray(tiou_thresholds, dtype=np.float64)
    n_t = len(tious)
    pred_segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    pred_labels = np.asarray(pred_labels, dtype=np.int64)
    gt_labels = np.asarray(gt_labels, dtype=np.int64)
    pred_video = np.asarray(pred_video, dtype=np.int64)
    gt_video = np.asarray(gt_video, dtype=np.int64)

    order = descending_score_order(pred_scores, pred_labels)
    p_video, p_seg, p_label = pred_video[order], pred_segments[order], pred_labels[order]
    n_pred, n_gt = len(order), len(gt_labels)

    # Candidate (prediction, GT) pairs: same video and class, tIoU at or above the lowest threshold.
    key_p = p_video * num_classes + p_label
    key_g = gt_video * num_classes + gt_labels
    ip, ig = pairs_with_equal_keys(key_p, key_g)
    iou = evaluation_tiou(p_seg[ip], gt_segments[ig])
    keep = iou >= tious.min() if n_t else np.zeros(len(iou), bool)
    ip, ig, iou = ip[keep], ig[keep], iou[keep]
    # Preference of each prediction: tIoU descending, then later GT first.
    pref = np.lexsort((-ig, -iou, ip))
    ip, ig, iou = ip[pref], ig[pref], iou[pref]
    agents, items = [], []
    for t, thr in enumerate(tious):
        hit = iou >= thr
        agents.append(t * n_pred + ip[hit])
        items.append(t * n_gt + ig[hit])
    tp = greedy_match(np.concatenate(agents), np.concatenate(items), n_t * n_pred).reshape(n_t, n_pred)

    npos = np.bincount(gt_labels, minlength=num_classes)
    counts = np.bincount(p_label, minlength=num_classes)
    bounds = np.r_[0, np.cumsum(counts)]
    ap = np.zeros((num_classes, n_t))
    for c in range(num_classes):
        if npos[c] == 0:
            ap[c] = np.nan
            continue
        if counts[c] == 0:
            continue  # no detections of this class: AP 0
        tp_cum = np.cumsum(tp[:, bounds[c]:bounds[c + 1]], axis=1).astype(np.float32)
        fp_cum = np.arange(1, counts[c] + 1, dtype=np.float32) - tp_cum
        recall = tp_cum / np.float32(npos[c])
        precision = tp_cum / (tp_cum + fp_cum)
        ap[c] = interpolated_ap(precision, recall)
    return ap


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.add.reduce(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def average_recall(prop_video, prop_segments, prop_scores, gt_video, gt_segments, tiou_thresholds) -> dict:
    """AR@AN curve and AUC as ActivityNet's `average_recall_vs_avg_nr_proposals` (SPEC §8.5).

    The videos are those with ground truth; pass only proposals of those videos (every row counts towards
    the proposal budget). Class labels are ignored: the same box under two labels is two proposals.
    Budget: on average at most MAX_AVG_PROPOSALS per video, the curve sampled at 1..100 proposals per
    video. Returns `recall` [n_tiou, 100], `avg_recall` [100], `proposals_per_video` [100], `AR@k` for k in
    AR_AT (= avg_recall[k - 1]) and `AUC` (trapezoid area over proposals_per_video / its last value).
    """
    tious = np.asarray(tiou_thresholds, dtype=np.float64)
    gt_video = np.asarray(gt_video, dtype=np.int64)
    prop_video = np.asarray(prop_video, dtype=np.int64)
    prop_segments = np.asarray(prop_segments, dtype=np.float64).reshape(-1, 2)
    gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    videos, gt_v = np.unique(gt_video, return_inverse=True)
    n_videos, n_props = len(videos), len(prop_video)
    if n_videos == 0:
        raise ValueError("average_recall: no ground truth to recall")
    if n_props == 0:
        zero = np.zeros(MAX_AVG_PROPOSALS)
        out = {"recall": np.zeros((len(tious), MAX_AVG_PROPOSALS)), "avg_recall": zero,
               "proposals_per_video": zero, "AUC": 0.0}
        out.update({f"AR@{k}": 0.0 for k in AR_AT})
        return out
    pos_in_videos = np.searchsorted(videos, prop_video)
    known = (pos_in_videos < n_videos) & (videos[np.minimum(pos_in_videos, n_videos - 1)] == prop_video)
    if not known.all():
        raise ValueError("average_recall: proposals of videos without ground truth were passed")
    prop_v = pos_in_videos

    ratio = MAX_AVG_PROPOSALS * float(n_videos) / n_props
    count = np.bincount(prop_v, minlength=n_videos)
    n_keep = np.minimum((count * ratio).astype(np.int64), count)
    total = int(n_keep.sum())
    # A video without proposals gets one all-zero column in the original: width 1, recalls nothing.
    width = np.where(count > 0, n_keep, 1)
    pcn = np.arange(1, MAX_AVG_PROPOSALS + 1) / 100.0 * (MAX_AVG_PROPOSALS * float(n_videos) / total)
    budget = np.minimum((width[:, None] * pcn[None, :]).astype(np.int64), width[:, None])  # [V, 100]

    order = descending_score_order(prop_scores, prop_v)
    sorted_v = prop_v[order]
    first_of_video = np.searchsorted(sorted_v, sorted_v, side="left")
    rank = np.arange(n_props) - first_of_video
    kept = rank < n_keep[sorted_v]
    order, rank = order[kept], rank[kept]

    ig, ip = pairs_with_equal_keys(gt_v, prop_v[order])  # sorted by GT, then by proposal rank
    iou = evaluation_tiou(prop_segments[order][ip], gt_segments[ig])
    prank = rank[ip]
    n_gt = len(gt_v)
    first_hit = np.full((len(tious), n_gt), np.iinfo(np.int64).max)
    for t, thr in enumerate(tious):
        hit = iou >= thr
        g, r = ig[hit], prank[hit]
        first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
        first_hit[t, g[first]] = r[first]
    gt_budget = budget[gt_v]  # [G, 100]
    matches = (first_hit[:, :, None] < gt_budget[None, :, :]).sum(axis=1).astype(np.float64)
    recall = matches / float(n_gt)
    avg_recall = recall.mean(axis=0)
    per_video = pcn * (float(total) / n_videos)
    out = {"recall": recall, "avg_recall": avg_recall, "proposals_per_video": per_video,
           "AUC": _trapz(avg_recall, per_video) / per_video[-1]}
    out.update({f"AR@{k}": float(avg_recall[k - 1]) for k in AR_AT})
    return out

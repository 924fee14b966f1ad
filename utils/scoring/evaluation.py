"""The evaluation entry point shared by training, test.py and scripts/evaluate.py (SPEC §8).

`evaluate_detections` takes the per-item detections of an inference pass (Thumos14 windows or whole
videos), shifts window detections to video time, fuses overlapping windows (Thumos14, SPEC §8.3), and scores
the result; `evaluate_merged` scores an already merged table, e.g. one read back from a results file with
`load_results_json`, so a saved result is re-scored without the model and gives the same numbers.

Video sets (`eval_videos`):
- "gt" (default, the original's behaviour, quirk 22): only videos with at least one ground-truth instance
  of the evaluated classes are scored; detections on the other evaluated videos are dropped before scoring
  and cannot be false positives.
- "all": detections on every video of `video_ids` are scored; on a video without ground truth every one
  is a false positive, which lowers AP. AR@AN is the same in both modes: it measures how much ground truth
  is recalled with a budget of proposals per ground-truth video (the original's definition), and
  detections on videos without ground truth can neither recall anything nor, by that definition, take
  part in the budget.

Merged detections (`merged`): dict video id -> {"segments": float64 [n, 2] video seconds, "scores": float64
[n], "labels": int64 [n] class indices, "items": list of the item each row came from}; videos in sorted
order, rows in the original's table order (fusion order for Thumos14 windows). Every video with detections
is kept, whatever `eval_videos` is, so a results file written from it can be re-scored in either mode.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets.families import DatasetFamily, family_of
from datasets.items import ItemInfo
from utils.scoring.fusion import cross_window_fusion
from utils.scoring.metrics import AR_AT, average_precision, average_recall

EVAL_VIDEOS = ("gt", "all")


# ----------------------------------------------------------------------------------------- flat tables

@dataclass
class _Table:
    """Detections as flat columns; `video` indexes the sorted evaluated video ids."""

    video: np.ndarray
    item: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def take(self, rows: np.ndarray) -> _Table:
        return _Table(self.video[rows], self.item[rows], self.segments[rows], self.scores[rows], self.labels[rows])


def _as_numpy(x: Any, dtype) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _video_index(video_ids: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    videos = sorted(set(video_ids))
    if not videos:
        raise ValueError("video_ids is empty: nothing to evaluate")
    return videos, {v: i for i, v in enumerate(videos)}


def _check_rows(where: str, segments: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                num_classes: int, owners: list[str], owner_of_row: np.ndarray) -> None:
    """Reject NaN/inf values, end < start and labels outside the class list, naming the offending owner."""
    problems = [
        (~np.isfinite(scores), "a score that is NaN or infinite"),
        (~np.isfinite(segments).all(axis=1), "a segment bound that is NaN or infinite"),
        (segments[:, 1] < segments[:, 0], "a segment with end < start"),
        ((labels < 0) | (labels >= num_classes), f"a label outside 0..{num_classes - 1} (the class list)"),
    ]
    for bad, what in problems:
        if bad.any():
            rows = np.flatnonzero(bad)
            row, owner = int(rows[0]), int(owner_of_row[rows[0]])
            local = row - int(np.searchsorted(owner_of_row, owner))  # owner_of_row is sorted
            raise ValueError(f"{where}: {len(rows)} detection(s) with {what}, first in {owners[owner]!r} "
                             f"(its row {local}: segment {segments[row].tolist()}, score {scores[row]}, "
                             f"label {labels[row]})")


def _stack_rows(where: str, owners: list[str], segs: list, scores: list, labels: list, num_classes: int):
    """Concatenate per-owner columns (one list entry per owner) and validate them with `_check_rows`.

    Returns ``(segments [n, 2], scores [n], labels [n], owner_of_row [n])``.
    """
    owner_of_row = np.repeat(np.arange(len(owners)), [len(s) for s in scores])
    segments = np.concatenate(segs) if segs else np.zeros((0, 2))
    score = np.concatenate(scores) if scores else np.zeros(0)
    label = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    _check_rows(where, segments, score, label, num_classes, owners, owner_of_row)
    return segments, score, label, owner_of_row


def _ground_truth_arrays(ground_truth: Mapping[str, Any], index: dict[str, int], classes: list[str]):
    class_index = {c: i for i, c in enumerate(classes)}
    video, segs, labels = [], [], []
    for vid, rows in ground_truth.items():
        if vid not in index:
            raise ValueError(f"ground truth: video {vid!r} is not among the evaluated video_ids")
        for row in rows:
            if len(row) != 3:
                raise ValueError(f"ground truth of {vid!r}: expected rows (t_start, t_end, class_name), got {row!r}")
            t0, t1, name = row
            if name not in class_index:
                raise ValueError(f"ground truth of {vid!r}: label {name!r} is not an evaluated class ({classes})")
            if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
                raise ValueError(f"ground truth of {vid!r}: invalid segment [{t0}, {t1}] (need finite, end >= start)")
            video.append(index[vid])
            segs.append((float(t0), float(t1)))
            labels.append(class_index[name])
    return (np.asarray(video, np.int64), np.asarray(segs, np.float64).reshape(-1, 2),
            np.asarray(labels, np.int64))


# ------------------------------------------------------------------------------- per-item collection

@dataclass(frozen=True)
class ItemDetections:
    """The detections of one item: `segments` [k, 2] seconds relative to the item start, `scores` [k],
    `labels` [k] class indices (numpy or torch), and the item they were found in."""

    info: ItemInfo
    segments: Any
    scores: Any
    labels: Any


def _collect_items(item_detections: list[ItemDetections], index: dict[str, int], num_classes: int,
                   need_windows: bool):
    """Per-item records -> flat table in video seconds, rows ordered by (video, window start, score desc)."""
    names, item_video, item_start, item_end, item_fps, offsets = [], [], [], [], [], []
    segs, scores, labels = [], [], []
    for rec in item_detections:
        info = rec.info
        name, src = info.name, info.source_video
        if src not in index:
            raise ValueError(f"detections of item {name!r}: video {src!r} is not among the evaluated video_ids")
        seg = _as_numpy(rec.segments, np.float64)
        sc = _as_numpy(rec.scores, np.float64).reshape(-1)
        lab = _as_numpy(rec.labels, np.float64).reshape(-1)
        n = len(sc)
        if seg.size == 0 and n == 0:
            seg = seg.reshape(0, 2)
        if seg.ndim != 2 or seg.shape != (n, 2) or len(lab) != n:
            raise ValueError(f"detections of item {name!r}: expected segments [k, 2], scores [k], labels [k]; "
                             f"got shapes {seg.shape}, {sc.shape}, {lab.shape}")
        if np.any(lab != np.round(lab)):
            raise ValueError(f"detections of item {name!r}: labels must be integer class indices")
        window, fps = info.window, info.feature_fps
        if need_windows and (window is None or fps is None):
            raise ValueError(f"item {name!r}: window fusion needs 'window' (start, end) and 'feature_fps' on "
                             "every item (pass window_fusion=False for whole-video items)")
        names.append(name)
        item_video.append(index[src])
        item_start.append(float(window[0]) if window is not None else 0.0)
        item_end.append(float(window[1]) if window is not None else 0.0)
        item_fps.append(float(fps) if fps is not None else 1.0)
        offsets.append(float(info.time_offset))
        segs.append(seg)
        scores.append(sc)
        labels.append(lab.astype(np.int64))
    segments, score, label, item_of_row = _stack_rows("item detections", names, segs, scores, labels, num_classes)
    # Window detections are item-relative: shift to video time in float64 (as the original's table does).
    segments = segments + np.asarray(offsets, np.float64)[item_of_row][:, None]
    item_video = np.asarray(item_video, np.int64)
    item_start = np.asarray(item_start, np.float64)
    # Rows by video, window start, item position, then score descending (stable: ties keep their order).
    order = np.lexsort((-score, item_of_row, item_start[item_of_row], item_video[item_of_row]))
    table = _Table(item_video[item_of_row], item_of_row, segments, score, label).take(order)
    items = {"names": names, "video": item_video, "start": item_start,
             "end": np.asarray(item_end, np.float64), "fps": np.asarray(item_fps, np.float64)}
    return table, items


def _merged_dict(table: _Table, videos: list[str], item_names: list[str]) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    if len(table.video) == 0:
        return merged
    order = np.argsort(table.video, kind="stable")
    table = table.take(order)
    bounds = np.flatnonzero(np.r_[True, table.video[1:] != table.video[:-1], True])
    names = np.asarray(item_names, dtype=object)
    for a, b in zip(bounds[:-1], bounds[1:]):
        merged[videos[table.video[a]]] = {
            "segments": table.segments[a:b], "scores": table.scores[a:b], "labels": table.labels[a:b],
            "items": names[table.item[a:b]].tolist(),
        }
    return merged


def _table_from_merged(merged: Mapping[str, Mapping[str, Any]], index: dict[str, int], num_classes: int) -> _Table:
    unknown = [v for v in merged if v not in index]
    if unknown:
        raise ValueError(f"detections for {len(unknown)} video(s) not among the evaluated videos, e.g. "
                         f"{unknown[:5]}")
    vids = sorted(merged, key=index.__getitem__)
    segs, scores, labels = [], [], []
    for v in vids:
        d = merged[v]
        sc = _as_numpy(d["scores"], np.float64).reshape(-1)
        seg = _as_numpy(d["segments"], np.float64)
        lab = _as_numpy(d["labels"], np.int64).reshape(-1)
        if seg.shape != (len(sc), 2) or len(lab) != len(sc):
            raise ValueError(f"detections of {v!r}: expected segments [n, 2], scores [n], labels [n]; got shapes "
                             f"{seg.shape}, {sc.shape}, {lab.shape}")
        segs.append(seg)
        scores.append(sc)
        labels.append(lab)
    segments, score, label, owner = _stack_rows("merged detections", vids, segs, scores, labels, num_classes)
    video = np.asarray([index[v] for v in vids], np.int64)[owner]
    return _Table(video, np.zeros(len(score), np.int64), segments, score, label)


# ------------------------------------------------------------------------------------------ scoring

def _prepare(ground_truth: Mapping[str, Any], video_ids: Iterable[str], classes: list[str], dataset_name: str,
             eval_videos: str):
    """Checked arguments of both entry points: (settings, sorted video ids, their index, GT arrays)."""
    settings = family_of(dataset_name)
    if eval_videos not in EVAL_VIDEOS:
        raise ValueError(f"eval_videos must be one of {EVAL_VIDEOS}, got {eval_videos!r}")
    videos, index = _video_index(video_ids)
    return settings, videos, index, _ground_truth_arrays(ground_truth, index, classes)


def _score(table: _Table, gt_video, gt_segments, gt_labels, videos: list[str], classes: list[str],
           settings: DatasetFamily, dataset_name: str, eval_videos: str) -> dict:
    if len(gt_video) == 0:
        raise ValueError("no ground-truth instance of the evaluated classes: AP and AR are undefined")
    has_gt = np.zeros(len(videos), dtype=bool)
    has_gt[gt_video] = True
    on_gt_videos = table.take(np.flatnonzero(has_gt[table.video]))
    scored = table if eval_videos == "all" else on_gt_videos
    if len(table.video) == 0:
        warnings.warn("no detections to evaluate: every AP and AR is 0", stacklevel=3)

    tious = settings.tiou_thresholds
    ap = average_precision(scored.video, scored.segments, scored.scores, scored.labels,
                           gt_video, gt_segments, gt_labels, len(classes), tious)
    no_gt = [c for c, row in zip(classes, ap) if np.isnan(row).all()]
    if no_gt:
        warnings.warn(f"no ground truth for class(es) {no_gt}: their AP is undefined (null) and they are left "
                      "out of the means", stacklevel=3)
    # classes without ground truth (all-NaN rows) are left out; catch_warnings is avoided on purpose: leaving
    # it resets the warning registry, so the warning above would repeat at every evaluation of a run
    rated = ap[~np.isnan(ap).all(axis=1)]
    per_tiou = rated.mean(axis=0) if len(rated) else np.full(len(tious), np.nan)
    ar = average_recall(on_gt_videos.video, on_gt_videos.segments, on_gt_videos.scores, gt_video, gt_segments,
                        settings.ar_tiou_thresholds)

    metrics = {
        "dataset": dataset_name,
        "eval_videos": eval_videos,
        "iou_range": list(tious),
        "mAP_per_tiou": [float(x) for x in per_tiou],
        "average_mAP": float(np.mean(per_tiou)),
        "AP50": float(per_tiou[tious.index(0.5)]) if 0.5 in tious else None,
        "ap_per_class": {c: (None if np.isnan(row).all() else [float(x) for x in row])
                         for c, row in zip(classes, ap)},
        "AR_tiou_thresholds": list(settings.ar_tiou_thresholds),
    }
    metrics.update({f"AR@{k}": float(ar[f"AR@{k}"]) for k in AR_AT})
    metrics["AUC"] = float(ar["AUC"])
    metrics.update({
        "classes": list(classes),
        "num_detections_scored": int(len(scored.video)),
        "num_detections_total": int(len(table.video)),
        "num_detections_dropped": int(len(table.video) - len(scored.video)),
        "num_videos_evaluated": int(has_gt.sum() if eval_videos == "gt" else len(videos)),
        "num_videos_with_gt": int(has_gt.sum()),
        "num_gt_instances": int(len(gt_video)),
    })
    return metrics


def evaluate_detections(item_detections: list[ItemDetections], ground_truth: Mapping[str, Any],
                        video_ids: Iterable[str], classes: list[str], dataset_name: str,
                        eval_videos: str = "gt", window_fusion: bool = True) -> tuple[dict, dict]:
    """Score the detections of one inference pass. Returns (metrics, merged detections).

    item_detections: one `ItemDetections` per dataset item (its `ItemInfo` gives the video, offset, window
    and feature fps; `segments` [k, 2] item-relative seconds, `scores` [k], `labels` [k] class indices).
    ground_truth: video id -> [(t_start, t_end, class_name), ...] in video seconds; video_ids: every
    evaluated video, with or without ground truth. Window fusion runs for the Thumos14-style datasets when
    `window_fusion` is set and the items carry windows (inference_entire items have none).
    """
    settings, videos, index, gt = _prepare(ground_truth, video_ids, classes, dataset_name, eval_videos)
    windows = any(rec.info.window is not None for rec in item_detections)
    fuse = window_fusion and settings.windowed and windows
    table, items = _collect_items(item_detections, index, len(classes), need_windows=fuse)
    if fuse and len(table.video):
        rows = cross_window_fusion(table.video, table.item, table.segments, table.scores, table.labels,
                                   items["video"], items["start"], items["end"], items["fps"])
        table = table.take(rows)
    metrics = _score(table, *gt, videos, classes, settings, dataset_name, eval_videos)
    metrics["window_fusion"] = bool(fuse)
    return metrics, _merged_dict(table, videos, items["names"])


def evaluate_merged(merged: Mapping[str, Mapping[str, Any]], ground_truth: Mapping[str, Any],
                    video_ids: Iterable[str], classes: list[str], dataset_name: str,
                    eval_videos: str = "gt") -> dict:
    """Score an already merged table (see module docstring), e.g. from `load_results_json`."""
    settings, videos, index, gt = _prepare(ground_truth, video_ids, classes, dataset_name, eval_videos)
    table = _table_from_merged(merged, index, len(classes))
    metrics = _score(table, *gt, videos, classes, settings, dataset_name, eval_videos)
    metrics["window_fusion"] = False
    return metrics


# ------------------------------------------------------------------------------------ results files

def results_json(merged: Mapping[str, Mapping[str, Any]], classes: list[str]) -> dict:
    """ActivityNet results format of SPEC §8.6 (a leading `v_` is stripped from video ids)."""
    results = {}
    for vid, d in merged.items():
        key = vid[2:] if vid.startswith("v_") else vid
        segs = np.asarray(d["segments"], np.float64).tolist()
        results[key] = [{"segment": s, "label": classes[int(lab)], "score": float(sc)}
                        for s, lab, sc in zip(segs, np.asarray(d["labels"]).tolist(),
                                              np.asarray(d["scores"]).tolist())]
    return {"results": results, "external_data": {}}


def _unique_keys(source):
    """json object hook: a key given twice (e.g. one video listed twice) is an error, not 'the last wins'."""
    def pairs_to_dict(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"{source}: key {key!r} appears more than once in one JSON object (e.g. a video "
                                 "listed twice in 'results'); merge its detections into one list")
            result[key] = value
        return result
    return pairs_to_dict


def load_results_json(source: str | Path | Mapping, video_ids: Iterable[str], classes: list[str]) -> dict:
    """Read detections in the ActivityNet results format into a merged table (see module docstring).

    A result key matches a video id as is, or with the `v_` prefix that `results_json` strips. Unknown
    videos or labels, malformed entries, NaN/inf values, segments with end < start and an empty result set
    are errors naming the file (and the entry).
    """
    where = str(source) if not isinstance(source, Mapping) else "results"
    if isinstance(source, Mapping):
        data = source
    else:
        try:
            with open(source) as handle:
                data = json.load(handle, object_pairs_hook=_unique_keys(source))
        except FileNotFoundError:
            raise FileNotFoundError(f"detections file not found: {source}") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"detections file {source} is a folder; expected a results JSON file") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), Mapping):
        raise ValueError(f"{where}: expected {{\"results\": {{video: [{{\"segment\": [s, e], \"score\": x, "
                         "\"label\": name}, ...]}}")
    known = set(video_ids)
    class_index = {c: i for i, c in enumerate(classes)}
    merged, unknown_videos, unknown_labels = {}, [], set()
    for key, entries in data["results"].items():
        vid = key if key in known else ("v_" + key if "v_" + key in known else None)
        if vid is None:
            unknown_videos.append(key)
            continue
        if not isinstance(entries, list):
            raise ValueError(f"{where}: results[{key!r}] must be a list of detections")
        segs, scores, labels = [], [], []
        for j, e in enumerate(entries):
            try:
                seg, score, label = e["segment"], e["score"], e["label"]
                if len(seg) != 2:
                    raise ValueError
                t0, t1 = float(seg[0]), float(seg[1])
                score = float(score)
                if not isinstance(label, str):
                    raise TypeError
            except (KeyError, TypeError, ValueError, IndexError):
                raise ValueError(f"{where}: results[{key!r}][{j}] must be {{\"segment\": [start, end], "
                                 f"\"score\": number, \"label\": class name}}, got {e!r}") from None
            # Checked here as well as when scoring, so that the message names the file and the entry.
            if not (math.isfinite(score) and math.isfinite(t0) and math.isfinite(t1)):
                raise ValueError(f"{where}: results[{key!r}][{j}] has a NaN or infinite score or segment bound: "
                                 f"{e!r}")
            if t1 < t0:
                raise ValueError(f"{where}: results[{key!r}][{j}] has a segment with end < start: {e!r}")
            if label not in class_index:
                unknown_labels.add(label)
                continue
            segs.append((t0, t1))
            scores.append(score)
            labels.append(class_index[label])
        if vid in merged:
            raise ValueError(f"{where}: video {vid!r} appears twice (as {key!r} and with/without 'v_')")
        merged[vid] = {"segments": np.asarray(segs, np.float64).reshape(-1, 2),
                       "scores": np.asarray(scores, np.float64), "labels": np.asarray(labels, np.int64),
                       "items": [vid] * len(scores)}
    if unknown_videos:
        raise ValueError(f"{where}: detections for {len(unknown_videos)} video(s) that are not evaluated "
                         f"videos of the ground truth, e.g. {unknown_videos[:5]}")
    if unknown_labels:
        raise ValueError(f"{where}: detections with label(s) outside the evaluated classes: "
                         f"{sorted(map(str, unknown_labels))[:10]} (evaluated: {classes})")
    if sum(len(d["scores"]) for d in merged.values()) == 0:
        raise ValueError(f"{where}: holds no detections")
    return merged


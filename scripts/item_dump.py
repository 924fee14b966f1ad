"""Dump a dataset's items in the layout of the reference fixtures and compare two dumps.

Layout (`modes.<mode>`): `classes`, `num_items`, `num_instances`, `num_source_videos`, `item_names`, `items`
(per item: video/window/offset/length/duration, window-relative annotations and the target, with salient
masks written as ``[start, end)`` ranges), `eval_ground_truth`. Used by `scripts/inspect_dataset.py` and by
the fidelity tests; needs no feature file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from datasets.annotations import read_json
from datasets.base import BaseDataset


def false_ranges(row: np.ndarray) -> list[list[int]]:
    """``[start, end)`` runs where a boolean row is False."""
    padded = np.concatenate([[True], np.asarray(row, dtype=bool), [True]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def dump_item(dataset: BaseDataset, index: int) -> dict:
    item = dataset.items[index]
    video = dataset.videos[item.video]
    target = dataset.target(index)
    names = [dataset.classes[k] for k in item.class_ids.tolist()]
    salient = target["salient_mask"].numpy()
    out: dict[str, Any] = {
        "index": index,
        "video_name": item.name,
        "feature_length": item.length,
        "feature_duration": item.duration,
        "video_fps": video.video_fps,
        "annotations": [{"segment": [float(s), float(e)], "label": name}
                        for (s, e), name in zip(item.segments.tolist(), names)],
    }
    if dataset.feature_fps_of_items:
        out.update(src_video_name=video.video_id, window=list(item.window) if item.window else None,
                   time_offset=item.time_offset, feature_fps=dataset.feature_fps(video))
    else:
        out.update(snippet_length=video.snippet_length)
    out["target"] = {
        "segments_cw": target["segments"].tolist(),
        "labels": target["labels"].tolist(),
        "semantic_labels": target["semantic_labels"].tolist(),
        "semantic_label_names": names,
        "video_duration": dataset.info(index).duration,
        "salient_false_ranges": [false_ranges(row) for row in salient],
        "mask_labels_one_ranges": false_ranges(salient.all(axis=0)) if len(salient) else [],
    }
    return out


def dump_mode(dataset: BaseDataset, slice_overlap: float | None = None) -> dict:
    items = [dump_item(dataset, k) for k in range(len(dataset))]
    return {
        "official_subset": dataset.subset,
        "classes": list(dataset.classes),
        "slice_overlap": slice_overlap,
        "num_items": len(items),
        "num_instances": int(sum(len(item.class_ids) for item in dataset.items)),
        "num_source_videos": len({item.video for item in dataset.items}),
        "item_names": dataset.item_names,
        "items": items,
        "eval_ground_truth": {
            video.video_id: {"feature_duration": video.snippet_duration,
                             "annotations": [{"segment": [s, e], "label": label}
                                             for s, e, label in dataset.ground_truth[video.video_id]]}
            for video in dataset.videos if video.video_id in dataset.ground_truth
        },
        "video_ids": list(dataset.video_ids),
    }


def read_dump(path: str | Path) -> dict:
    return read_json(path, "dataset dump")


# Keys compared per mode; keys absent from either side (e.g. ANet has no eval_ground_truth in the fixture) skip.
COMPARED_MODE_KEYS = ("classes", "num_items", "num_instances", "num_source_videos", "item_names", "items",
                      "eval_ground_truth")


def compare_values(mine: Any, ref: Any, path: str, diffs: list[str], atol: float = 1e-6, limit: int = 50) -> None:
    """Recursive comparison; floats to `atol`; every key of `ref` must exist in `mine`."""
    if len(diffs) >= limit:
        return
    if isinstance(ref, dict):
        if not isinstance(mine, dict):
            diffs.append(f"{path}: expected an object, got {type(mine).__name__}")
            return
        for key, value in ref.items():
            if key not in mine:
                diffs.append(f"{path}.{key}: missing")
            else:
                compare_values(mine[key], value, f"{path}.{key}", diffs, atol, limit)
    elif isinstance(ref, (list, tuple)):
        if not isinstance(mine, (list, tuple)) or len(mine) != len(ref):
            diffs.append(f"{path}: length {len(mine) if isinstance(mine, (list, tuple)) else mine!r} != {len(ref)}")
            return
        for k, (a, b) in enumerate(zip(mine, ref)):
            compare_values(a, b, f"{path}[{k}]", diffs, atol, limit)
    elif isinstance(ref, float) or isinstance(mine, float):
        if not (isinstance(mine, (int, float)) and isinstance(ref, (int, float))) or not math.isclose(
                mine, ref, rel_tol=0.0, abs_tol=atol):
            diffs.append(f"{path}: {mine!r} != {ref!r}")
    elif mine != ref:
        diffs.append(f"{path}: {mine!r} != {ref!r}")


def compare_dumps(mine: dict, ref: dict, atol: float = 1e-6, limit: int = 50) -> list[str]:
    """Differences between two dumps (modes present in both; a mode missing from `mine` is a difference)."""
    diffs: list[str] = []
    for mode, ref_mode in ref.get("modes", {}).items():
        if mode not in mine.get("modes", {}):
            diffs.append(f"modes.{mode}: missing")
            continue
        mine_mode = mine["modes"][mode]
        for key in COMPARED_MODE_KEYS:
            if key in ref_mode and key in mine_mode:
                compare_values(mine_mode[key], ref_mode[key], f"modes.{mode}.{key}", diffs, atol, limit)
    return diffs

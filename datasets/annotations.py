"""Reading the release's annotation / feature-info / description files and selecting a mode's videos.

One code path decides which videos and which instances a mode uses (SPEC §2.6, §3.1, §4, §8.1); the datasets
build their windows from it and the evaluator's ground truth (`load_ground_truth`) comes from it too, so the
two can never disagree.
"""
from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .families import DatasetFamily, family_of

AMBIGUOUS_LABEL = "Ambiguous"


class DataWarning(UserWarning):
    """Something in the data files looks wrong but the original code accepts it; the run goes on."""


@dataclass
class VideoRecord:
    """One video of a mode with its valid instances (sorted by start + end, seconds of the whole video)."""

    video_id: str
    snippet_length: int
    snippet_duration: float
    video_fps: float
    segments: np.ndarray = field(repr=False)   # [n, 2] float64 (start, end) seconds
    labels: list[str] = field(repr=False)      # [n] class names
    class_ids: np.ndarray = field(repr=False)  # [n] int64 index in the mode's class list

    @property
    def num_instances(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------------------------------- file reading

def read_json(path: str | Path, what: str) -> Any:
    """Load a JSON file (``.json`` or gzip-compressed ``.json.gz``) with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as err:
        raise ValueError(f"{what} {path} is not valid JSON{' (gzip)' if path.suffix == '.gz' else ''}: {err}") from err


def load_annotation_file(path: str | Path) -> dict:
    """Annotation JSON: ``{"classes": [...], "database": {video: {"subset", "annotations": [{segment, label}]}}}``."""
    data = read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise ValueError(f"annotation file {path}: expected a JSON object with a 'database' object "
                         f"(video id -> {{'subset', 'annotations'}})")
    classes = data.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ValueError(f"annotation file {path}: 'classes' must be a list of class names")
    for video_id, entry in data["database"].items():
        if not isinstance(entry, dict) or "subset" not in entry:
            raise ValueError(f"annotation file {path}: database[{video_id!r}] has no 'subset'")
        annotations = entry.get("annotations", [])
        if not isinstance(annotations, list):
            raise ValueError(f"annotation file {path}: database[{video_id!r}]['annotations'] must be a list")
        for k, anno in enumerate(annotations):
            segment = anno.get("segment") if isinstance(anno, dict) else None
            ok = (isinstance(segment, (list, tuple)) and len(segment) == 2
                  and all(isinstance(x, (int, float)) and np.isfinite(x) for x in segment)
                  and isinstance(anno.get("label"), str))
            if not ok:
                raise ValueError(f"annotation file {path}: database[{video_id!r}]['annotations'][{k}] must be "
                                 f"{{'segment': [start_s, end_s], 'label': str}}, got {anno!r}")
            if segment[1] < segment[0]:
                raise ValueError(f"annotation file {path}: database[{video_id!r}]['annotations'][{k}] ends "
                                 f"before it starts: segment {segment}")
    return data


INFO_KEYS = ("snippet_length", "snippet_duration", "video_fps")


def load_feature_info(path: str | Path) -> dict[str, dict]:
    """Feature-info JSON: video id -> {snippet_length, snippet_duration, video_fps, ...} (SPEC §2.2)."""
    data = read_json(path, "feature info file")
    if not isinstance(data, dict):
        raise ValueError(f"feature info file {path}: expected a JSON object video id -> info")
    for video_id, entry in data.items():
        missing = [key for key in INFO_KEYS if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ValueError(f"feature info file {path}: entry {video_id!r} lacks {missing} "
                             f"(expected keys {list(INFO_KEYS)})")
        if int(entry["snippet_length"]) < 1 or float(entry["video_fps"]) <= 0:
            raise ValueError(f"feature info file {path}: entry {video_id!r} needs snippet_length >= 1 and "
                             f"video_fps > 0, got {entry}")
    return data


def load_descriptions(path: str | Path | None, required: bool) -> dict:
    """Class descriptions (SPEC §2.4). Only `target_type description` reads them, so a missing file is an
    error only then (the original always loads the file)."""
    if path is not None and Path(path).is_file():
        data = read_json(path, "description file")
        if not isinstance(data, dict):
            raise ValueError(f"description file {path}: expected a JSON object class name -> description")
        return data
    if required:
        raise FileNotFoundError(f"description file {path} not found (needed by --target_type description)")
    if path is not None:
        warnings.warn(f"description file {path} not found; continuing without class descriptions "
                      f"(only --target_type description needs them)", DataWarning, stacklevel=3)
    return {}


def check_classes_known(classes: list[str], annotations: dict, anno_path: str | Path, source: str) -> None:
    """Every class of a split list must exist in the annotation file (its `classes` list or its labels)."""
    known = set(annotations.get("classes", []))
    known.update(anno["label"] for entry in annotations["database"].values() for anno in entry.get("annotations", []))
    unknown = [name for name in classes if name not in known]
    if unknown:
        raise ValueError(f"classes {unknown} of {source} are not in the annotation file {anno_path} "
                         f"(neither in its 'classes' list nor used as a label); check the split list and "
                         f"the annotation file belong to the same dataset")


# ---------------------------------------------------------------------------------------------- selection

def select_videos(annotations: dict, info: dict[str, dict] | None, classes: list[str], subset: str,
                  rules: DatasetFamily, feature_stride: int | None, anno_path: str | Path = "annotation file",
                  info_path: str | Path = "feature info file") -> list[VideoRecord]:
    """Videos of `subset` (sorted by id) with their valid instances of `classes`.

    Exact subset match (SPEC §12 MAY FIX #36: the original tests `video_subset in requested`, which gives the
    same videos on the shipped files). Videos absent from the info file are skipped as in the original;
    ActivityNet videos without a valid instance are dropped (SPEC §4).
    """
    database = annotations["database"]
    subset_ids = sorted(vid for vid, entry in database.items() if entry["subset"] == subset)
    if not subset_ids:
        found = sorted({str(entry["subset"]) for entry in database.values()})
        raise ValueError(f"annotation file {anno_path} has no video with subset {subset!r} "
                         f"(subsets present: {found})")
    subset_ids = [vid for vid in subset_ids if vid not in rules.excluded_videos]
    if info is not None:
        absent = [vid for vid in subset_ids if vid not in info]
        subset_ids = [vid for vid in subset_ids if vid in info]
        if not subset_ids:
            raise ValueError(f"none of the subset {subset!r} videos of {anno_path} is in the feature info file "
                             f"{info_path} (e.g. {absent[:3]} vs {sorted(info)[:3]}): check the video id format")
        if absent:
            warnings.warn(f"{len(absent)} subset {subset!r} videos of {anno_path} are not in {info_path} and are "
                          f"skipped (first: {absent[:5]})", DataWarning, stacklevel=3)
    if rules.min_duration_in_snippets and feature_stride is None:
        raise ValueError(f"{rules.name}: feature_stride is needed for the minimum instance length "
                         f"(feature_stride / video_fps)")

    class_index = {name: k for k, name in enumerate(classes)}
    records: list[VideoRecord] = []
    overshoots: list[tuple[float, str]] = []
    for vid in subset_ids:
        entry = database[vid]
        if info is not None:
            meta = info[vid]
            fps, length = float(meta["video_fps"]), int(meta["snippet_length"])
            duration = float(meta["snippet_duration"])
        else:  # ground truth only: Thumos annotation entries carry their fps
            if rules.min_duration_in_snippets and "fps" not in entry:
                raise ValueError(f"annotation file {anno_path}: database[{vid!r}] has no 'fps'; pass the feature "
                                 f"info file to know the video frame rate")
            fps, length, duration = float(entry.get("fps", 0.0)), 0, float("nan")
        kept = [a for a in entry.get("annotations", [])
                if a["label"] != AMBIGUOUS_LABEL and a["label"] in class_index]
        kept.sort(key=lambda a: a["segment"][0] + a["segment"][1])   # stable, as the original
        min_len = feature_stride / fps if rules.min_duration_in_snippets else rules.min_duration_s
        kept = [a for a in kept if a["segment"][1] - a["segment"][0] > min_len]
        if not kept and not rules.keep_videos_without_gt:
            continue
        segments = np.array([a["segment"] for a in kept], dtype=np.float64).reshape(-1, 2)
        labels = [a["label"] for a in kept]
        if info is not None and len(segments):
            # An end beyond the last snippet by more than one snippet is a data error the original keeps
            # (Thumos windows cut it, ActivityNet targets exceed 1); it is kept here too, with a warning.
            over = segments[:, 1] - duration
            overshoots += [(float(o), vid) for o in over[over > duration / length]]   # one snippet of slack
        records.append(VideoRecord(vid, length, duration, fps, segments, labels,
                                   np.array([class_index[name] for name in labels], dtype=np.int64)))
    if overshoots:
        worst, worst_vid = max(overshoots)
        videos = sorted({vid for _, vid in overshoots})
        warnings.warn(f"{len(overshoots)} annotation segments of subset {subset!r} in {anno_path} end more than one "
                      f"snippet after their video's features (snippet_duration of {info_path}); worst: {worst:.2f} s "
                      f"past the end in {worst_vid}; videos: {videos[:5]}{' ...' if len(videos) > 5 else ''}. "
                      f"They are kept unclipped, as the original does.", DataWarning, stacklevel=3)
    return records


def ground_truth_of(records: list[VideoRecord], rules: DatasetFamily) -> tuple[dict, list[str]]:
    """Evaluator ground truth (videos with >= 1 valid instance) and the ids of every video the mode evaluates."""
    ground_truth = {r.video_id: [(float(s), float(e), label) for (s, e), label in zip(r.segments, r.labels)]
                    for r in records if r.num_instances}
    video_ids = [r.video_id for r in records if r.num_instances or rules.keep_videos_without_gt]
    return ground_truth, video_ids


def ground_truth_from(annotations: dict, info: dict[str, dict] | None, classes: list[str], subset: str,
                      rules: DatasetFamily, feature_stride: int | None, anno_path: str | Path,
                      info_path: str | Path) -> tuple[dict[str, list[tuple[float, float, str]]], list[str]]:
    """`load_ground_truth` on files already read (`load_annotation_file`, `load_feature_info` or None)."""
    check_classes_known(classes, annotations, anno_path, "the class list")
    records = select_videos(annotations, info, classes, subset, rules, feature_stride, anno_path, info_path)
    return ground_truth_of(records, rules)


def load_ground_truth(anno_file_path: str | Path, classes: list[str], subset: str, dataset_name: str,
                      feature_info_path: str | Path | None = None, feature_stride: int | None = None,
                      ) -> tuple[dict[str, list[tuple[float, float, str]]], list[str]]:
    """Evaluation ground truth of one annotation subset, filtered exactly as the datasets filter it.

    Returns ``(ground_truth, video_ids)``: ``ground_truth[video] = [(start_s, end_s, class_name), ...]`` for the
    videos with at least one valid instance of `classes`; `video_ids` = every video of the subset the mode
    evaluates (Thumos14: all non-excluded subset videos present in the info file; ActivityNet: the GT videos).
    `subset` is the annotation's subset string ("test"/"val" for Thumos14, "train"/"val" for ActivityNet).
    Without `feature_info_path` the info-file intersection is skipped and Thumos fps come from the annotations.
    """
    rules = family_of(dataset_name)
    annotations = load_annotation_file(anno_file_path)
    info = load_feature_info(feature_info_path) if feature_info_path is not None else None
    return ground_truth_from(annotations, info, classes, subset, rules, feature_stride, anno_file_path,
                             feature_info_path or "(no info file)")

"""Tiny datasets in the release's on-disk format, written into a test's tmp_path."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.config import default_config

FPS = 30.0
STRIDE = 8


@dataclass
class Video:
    subset: str
    length: int                                     # snippets
    annotations: list = field(default_factory=list)  # [(start_s, end_s, label), ...]
    fps: float = FPS
    features: bool = True                           # write a feature file
    info: bool = True                               # list the video in the feature info file


def feature_rows(video_id: str, length: int, dim: int) -> np.ndarray:
    """Deterministic, distinct rows: row t of every video is recognisable (value = t + small video code)."""
    code = (sum(map(ord, video_id)) % 97) / 1000.0
    return (np.arange(length, dtype=np.float32)[:, None] + code + np.arange(dim, dtype=np.float32)[None] * 1e-3)


def write_dataset(root: Path, videos: dict[str, Video], train_classes: list[str], test_classes: list[str],
                  classes: list[str] | None = None, dataset_folder: str = "THUMOS14", stride: int = STRIDE,
                  dim: int = 4, gzip_annotations: bool = False, split: int = 75, split_id: int = 0) -> dict:
    """Write annotations, info, descriptions, split lists and features; return the config path overrides."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = classes if classes is not None else sorted(set(train_classes) | set(test_classes))
    database, info = {}, {}
    for vid, v in videos.items():
        frame_length = v.length * stride + 3
        database[vid] = {"subset": v.subset, "fps": v.fps, "duration": frame_length / v.fps,
                         "annotations": [{"segment": [s, e], "label": label} for s, e, label in v.annotations]}
        if not v.info:
            continue
        info[vid] = {"frame_length": frame_length, "snippet_length": v.length, "frame_duration": frame_length / v.fps,
                     "video_fps": v.fps, "snippet_duration": v.length * stride / v.fps}
    anno_path = root / ("annotations.json.gz" if gzip_annotations else "annotations.json")
    text = json.dumps({"classes": classes, "database": database})
    if gzip_annotations:
        anno_path.write_bytes(gzip.compress(text.encode()))
    else:
        anno_path.write_text(text)
    (root / "info.json").write_text(json.dumps(info))
    descriptions = {c: {"idx": k, "Elaboration": {"Description": [f"does {c}"]}, "Origin_Chat": ""}
                    for k, c in enumerate(classes)}
    (root / "descriptions.json").write_text(json.dumps(descriptions))
    folder = {75: "train_75_test_25", 50: "train_50_test_50"}[split]
    for mode, names in (("train", train_classes), ("test", test_classes)):
        path = root / "splits" / folder / dataset_folder / mode / f"split_{split_id}.list"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{n}\n" for n in names))
    (root / "features").mkdir(exist_ok=True)
    for vid, v in videos.items():
        if v.features:
            np.save(root / "features" / f"{vid}.npy", feature_rows(vid, v.length, dim))
    return {"anno_file_path": str(anno_path), "feature_info_path": str(root / "info.json"),
            "description_file_path": str(root / "descriptions.json"), "feature_path": str(root / "features"),
            "split_root": str(root / "splits"), "feature_stride": stride, "hidden_dim": dim,
            "split": split, "split_id": split_id}


def make_cfg(paths: dict, **overrides):
    return default_config(**{"dataset_name": "Thumos14", **paths, **overrides})

"""Shared dataset machinery: reading the release files, the item index, targets and feature loading.

The item index (which video, which snippets, which instances) and every target are computed from the
annotation and feature-info files alone, once, at construction. Feature files are opened only by
`__getitem__` (memory-mapped, only the needed rows copied) and by `validate_features`, so tools that only
need metadata (`scripts/inspect_dataset.py`, the fixture tests) never touch them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from . import windows as T
from .annotations import (
    VideoRecord,
    check_classes_known,
    ground_truth_of,
    load_annotation_file,
    load_descriptions,
    load_feature_info,
    select_videos,
)
from .families import DatasetFamily, family_of
from .items import ItemInfo
from .splits import mode_classes, split_list_path

MODES = ("train", "inference")


@dataclass(frozen=True, slots=True)
class Item:
    """One sample: a window of a video (Thumos14) or a whole video (ActivityNet)."""

    name: str                        # window id or video id
    video: int                       # index into dataset.videos
    window: tuple[int, int] | None   # inclusive snippet indices in the source video (None: whole video)
    time_offset: float               # seconds of the item start in the source video
    duration: float                  # normalisation basis Dw (seconds)
    length: int                      # T of the features __getitem__ returns
    segments: np.ndarray             # [n, 2] float64, seconds relative to the item start
    class_ids: np.ndarray            # [n] int64, index in dataset.classes

    @classmethod
    def whole_video(cls, index: int, video: VideoRecord, length: int) -> Item:
        """An item spanning video `index` of dataset.videos: no window, targets normalised by its snippet_duration."""
        return cls(video.video_id, index, None, 0.0, video.snippet_duration, length, video.segments.copy(),
                   video.class_ids.copy())


class FeatureFileError(ValueError):
    """A feature file is missing, has the wrong shape, or holds NaN/inf."""


class BaseDataset(Dataset):
    """Common part of the Thumos14 and ActivityNet1.3 datasets (SPEC §2-§4).

    Args:
        cfg: configuration namespace (original flag names, SPEC §1.3, plus `split_root`).
        mode: "train" (seen classes) or "inference" (unseen classes).
        check_features: validate every feature file the items use at construction: True (presence, shape
            and NaN/inf scan), "shape" (presence and shape only), False (nothing; `__getitem__` still checks
            the rows it reads).
        expected_feature_dim: if given, feature files must have this many channels (the model's hidden_dim).
        windows: item policy, default = `mode`. `Thumos14Dataset(cfg, "train", windows="inference")` gives the
            training videos and seen classes cut like inference (every window, inference overlap), e.g. to
            evaluate on held-out seen-class videos (see `restrict`). No effect on ActivityNet.
    """

    def __init__(self, cfg, mode: str, check_features: bool | str = True, expected_feature_dim: int | None = None,
                 windows: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if windows not in (None, *MODES):
            raise ValueError(f"windows must be one of {MODES} or None, got {windows!r}")
        self.mode = mode
        self.window_mode = windows or mode
        self.dataset_name = cfg.dataset_name
        self.family: DatasetFamily = family_of(cfg.dataset_name)
        self.rules = self.family   # how videos and instances are selected (datasets/annotations.py)
        self.anno_file_path = Path(cfg.anno_file_path)
        self.feature_info_path = Path(cfg.feature_info_path)
        self.feature_path = Path(cfg.feature_path)
        self.feature_stride = int(cfg.feature_stride)
        self.target_type = getattr(cfg, "target_type", "prompt")
        self.subset = self.rules.subsets[mode]

        annotations = load_annotation_file(self.anno_file_path)
        info = load_feature_info(self.feature_info_path)
        self.classes: list[str] = mode_classes(cfg, mode, annotations.get("classes", []), self.anno_file_path)
        if getattr(cfg, "task", "zero_shot") == "close_set":
            source = "the 'classes' list"
        else:
            split_root = getattr(cfg, "split_root", "./splits")
            source = f"split list {split_list_path(split_root, cfg.dataset_name, cfg.split, cfg.split_id, mode)}"
        check_classes_known(self.classes, annotations, self.anno_file_path, source)
        self.descriptions: dict = load_descriptions(getattr(cfg, "description_file_path", None),
                                                     required=self.target_type == "description")
        self.videos: list[VideoRecord] = select_videos(annotations, info, self.classes, self.subset, self.rules,
                                                       self.feature_stride, self.anno_file_path,
                                                       self.feature_info_path)
        self.ground_truth, self.video_ids = ground_truth_of(self.videos, self.rules)
        self.items: list[Item] = self._build_items(cfg)
        if not self.items:
            raise ValueError(f"{type(self).__name__}({mode}): no items: no video of subset {self.subset!r} in "
                             f"{self.anno_file_path} has a usable instance of the classes {self.classes[:5]}...")
        self._feature_dim: int | None = None
        if check_features:
            self.validate_features(check_values=check_features != "shape", expected_dim=expected_feature_dim)

    # ------------------------------------------------------------------------------------------ subclass API
    def _build_items(self, cfg) -> list[Item]:
        raise NotImplementedError

    def _load_item_features(self, item: Item) -> torch.Tensor:
        """Features of the item's snippets: its window, or the whole video."""
        video = self.videos[item.video]
        start, end = item.window if item.window is not None else (0, video.snippet_length - 1)
        return torch.from_numpy(self._read_rows(video, start, end))

    feature_fps_of_items = False   # Thumos items carry the feature frame rate (video_fps / feature_stride)

    # ------------------------------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict, ItemInfo]:
        """(features [T, C], training targets, the item's identity)."""
        item = self.items[index]
        features = self._load_item_features(item)
        return features, self.target(index), self.info(index)

    def restrict(self, video_ids) -> BaseDataset:
        """A copy holding only the items, ground truth and evaluated videos of the given source videos."""
        keep = set(video_ids)
        unknown = keep - {video.video_id for video in self.videos}
        if unknown:
            raise ValueError(f"restrict(): videos {sorted(unknown)[:5]} are not videos of this dataset "
                             f"({self.mode}, subset {self.subset!r})")
        new = copy.copy(self)
        positions = [k for k, video in enumerate(self.videos) if video.video_id in keep]
        remap = {old: new_index for new_index, old in enumerate(positions)}
        new.videos = [self.videos[k] for k in positions]
        new.items = [replace(item, video=remap[item.video]) for item in self.items if item.video in remap]
        new.ground_truth = {vid: gt for vid, gt in self.ground_truth.items() if vid in keep}
        new.video_ids = [vid for vid in self.video_ids if vid in keep]
        return new

    @property
    def item_names(self) -> list[str]:
        return [item.name for item in self.items]

    def item_video(self, index: int) -> VideoRecord:
        return self.videos[self.items[index].video]

    def feature_fps(self, video: VideoRecord) -> float:
        return video.video_fps / self.feature_stride

    def target(self, index: int) -> dict:
        """Training targets of item `index` (SPEC §3.3), built without reading any feature file."""
        item = self.items[index]
        n = len(item.class_ids)
        semantic = torch.from_numpy(item.class_ids.copy())
        labels = semantic.clone() if self.target_type == "none" else torch.zeros(n, dtype=torch.int64)
        return {
            "segments": torch.from_numpy(T.segments_to_cw(item.segments, item.duration)),
            "labels": labels,
            "semantic_labels": semantic,
            "salient_mask": torch.from_numpy(T.salient_mask(item.segments, item.duration, item.length)),
        }

    def info(self, index: int) -> ItemInfo:
        """Identity of item `index`: its video, window, offset, fps and normalisation duration."""
        item = self.items[index]
        video = self.videos[item.video]
        return ItemInfo(item.name, video.video_id, float(item.duration), float(item.time_offset), item.window,
                        self.feature_fps(video) if self.feature_fps_of_items else None)

    def feature_file(self, video_id: str) -> Path:
        return self.feature_path / f"{video_id}.npy"

    @property
    def feature_dim(self) -> int:
        """Channels of the feature files (read from the first file's header when not validated yet)."""
        if self._feature_dim is None:
            for video in self._used_videos():
                path = self.feature_file(video.video_id)
                if path.is_file():
                    self._feature_dim = int(self._open(path, video).shape[1])
                    break
            else:
                raise FileNotFoundError(f"no feature file found under {self.feature_path} "
                                        f"(expected <video_id>.npy, e.g. {self.feature_file(self.videos[0].video_id)})")
        return self._feature_dim

    def validate_features(self, check_values: bool = True, expected_dim: int | None = None) -> None:
        """Check every feature file the items use: present, ``[snippet_length, C]`` with one C, finite values.

        Raises FileNotFoundError / FeatureFileError naming the files; called by the constructor unless
        `check_features=False`.
        """
        videos = self._used_videos()
        missing = [self.feature_file(v.video_id) for v in videos if not self.feature_file(v.video_id).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(videos)} feature files are missing under {self.feature_path} (expected "
                f"<video_id>.npy for every {self.subset!r} video, see --feature_path); first missing: "
                + ", ".join(str(p) for p in missing[:5]))
        problems, non_finite, dims = [], [], {}
        for video in tqdm(videos, desc=f"checking {self.mode} features", leave=False, disable=None):
            path = self.feature_file(video.video_id)
            array = self._open(path, video, check_length=False)
            if array.ndim != 2:
                problems.append(f"{path}: shape {array.shape}, expected 2-D [snippet_length, C]")
                continue
            if array.shape[0] != video.snippet_length:
                problems.append(f"{path}: {array.shape[0]} rows, but {self.feature_info_path} gives snippet_length "
                                f"{video.snippet_length}")
            dims.setdefault(int(array.shape[1]), path)
            if check_values:
                bad = _first_non_finite_row(array)
                if bad is not None:
                    non_finite.append(f"{path} (row {bad})")
        if problems:
            raise FeatureFileError(f"{len(problems)} feature files disagree with the feature info file: "
                                   + "; ".join(problems[:5]))
        if len(dims) > 1:
            raise FeatureFileError("feature files have different dimensions: "
                                   + ", ".join(f"{dim} channels in {path}" for dim, path in dims.items()))
        dim = next(iter(dims))
        if expected_dim is not None and dim != expected_dim:
            raise FeatureFileError(f"feature files under {self.feature_path} have {dim} channels but the model "
                                   f"expects {expected_dim} (--hidden_dim must equal the feature dimension)")
        if non_finite:
            raise FeatureFileError(f"{len(non_finite)} feature files contain NaN or inf: " + ", ".join(non_finite[:5]))
        self._feature_dim = dim

    # ------------------------------------------------------------------------------------------ helpers
    def _used_videos(self) -> list[VideoRecord]:
        used = sorted({item.video for item in self.items})
        return [self.videos[k] for k in used]

    def _open(self, path: Path, video: VideoRecord, check_length: bool = True) -> np.ndarray:
        """Memory-map a feature file (nothing is read until rows are sliced)."""
        try:
            array = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise FileNotFoundError(f"feature file {path} of video {video.video_id} not found "
                                    f"(expected <feature_path>/<video_id>.npy)") from None
        except ValueError as err:
            raise FeatureFileError(f"feature file {path} cannot be memory-mapped ({err}); expected a numeric "
                                   f"[snippet_length, C] .npy array") from err
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
            raise FeatureFileError(f"feature file {path}: expected a numeric array, got {type(array).__name__} "
                                   f"{getattr(array, 'dtype', '')}")
        if check_length and (array.ndim != 2 or array.shape[0] != video.snippet_length):
            raise FeatureFileError(f"feature file {path}: shape {array.shape}, but {self.feature_info_path} gives "
                                   f"snippet_length {video.snippet_length} (expected [snippet_length, C])")
        return array

    def _read_rows(self, video: VideoRecord, start: int, end: int) -> np.ndarray:
        """Rows `start..end` (inclusive) of a video's features as a float32 copy, checked for NaN/inf."""
        path = self.feature_file(video.video_id)
        rows = np.array(self._open(path, video)[start:end + 1], dtype=np.float32)
        if not np.isfinite(rows).all():
            bad = start + int(np.argwhere(~np.isfinite(rows))[0, 0])
            raise FeatureFileError(f"feature file {path} contains NaN or inf (row {bad})")
        return rows


def _first_non_finite_row(array: np.ndarray, chunk: int = 4096) -> int | None:
    """Index of the first row with NaN/inf, scanning a memory-mapped array chunk by chunk."""
    for start in range(0, array.shape[0], chunk):
        finite = np.isfinite(array[start:start + chunk]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None

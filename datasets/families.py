"""Dataset families: everything the code knows about a `--dataset_name`, in one entry each.

Every place asks `family_of(cfg.dataset_name)` (the one place a dataset name is compared) instead of testing
names. Adding a dataset family is one new `DatasetFamily` entry in `FAMILIES` (README, "Adding a dataset").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# SPEC §2.6: removed from both modes of Thumos14 (814's annotations run past the video end; 1292 has only
# Ambiguous labels and no features; 270/1496 are the usual TadTR/G-TAD exclusions; 504 is unexplained).
THUMOS14_EXCLUDED_VIDEOS = frozenset({
    "video_test_0000270", "video_test_0001292", "video_test_0001496", "video_test_0000814", "video_test_0000504",
})


@dataclass(frozen=True)
class DatasetFamily:
    """How a family selects videos and instances, cuts items, finds its split lists and is scored."""

    name: str
    subsets: dict[str, str]            # mode -> annotation `subset` value ("inference" also names detection files)
    excluded_videos: frozenset[str]
    min_duration_s: float | None       # fixed minimum instance length (ActivityNet: 1 s) ...
    min_duration_in_snippets: bool     # ... or one snippet, `feature_stride / video_fps` (Thumos14)
    keep_videos_without_gt: bool       # Thumos: every subset video is evaluated; ActivityNet: dropped
    split_folder: str                  # folder of the family inside train_<x>_test_<y>/ (SPEC §2.5)
    tiou_thresholds: tuple[float, ...]     # mAP (SPEC §8)
    ar_tiou_thresholds: tuple[float, ...]  # AR@AN (SPEC §8.5)
    windowed: bool                     # sliding windows (Thumos14) or whole rescaled videos (ActivityNet)
    default_stride: int                # --feature_stride of the headline configurations (scripts/evaluate.py)
    default_split_root: str = "./splits"   # where the family's split lists lie by default
    generated_on_first_use: bool = False   # the embedded demo (config/demo.yaml) writes itself when absent

    def fuses_windows(self, cfg) -> bool:
        """Whether detections of overlapping inference windows go through cross-window NMS (SPEC §8.3): the one
        decision, used by the evaluation and the detector API."""
        return self.windowed and cfg.inference_slice_overlap > 0 and not cfg.inference_entire

    def detection_file(self, epoch: int) -> str:
        """Name of the results file of an evaluation (`epoch` -1: test.py)."""
        return f"detection_{self.subsets['inference']}_{epoch}_raw.json"


# mAP thresholds are literal lists in the original; the AR ones come from np.linspace (so Thumos has
# 0.8500000000000001 and ActivityNet 0.8999999999999999, and Thumos includes tIoU 1.0: quirk 25, KEEP).
_THUMOS_TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)
_THUMOS_AR_TIOUS = tuple(np.linspace(0.5, 1.0, 11).tolist())
_THUMOS_SUBSETS = {"train": "val", "inference": "test"}

FAMILIES = {
    "Thumos14": DatasetFamily("Thumos14", _THUMOS_SUBSETS, THUMOS14_EXCLUDED_VIDEOS, None, True, True, "THUMOS14",
                              _THUMOS_TIOUS, _THUMOS_AR_TIOUS, windowed=True, default_stride=8),
    # The embedded synthetic dataset is read exactly like Thumos14, without the hard-coded exclusions.
    "Synthetic": DatasetFamily("Synthetic", _THUMOS_SUBSETS, frozenset(), None, True, True, "THUMOS14",
                               _THUMOS_TIOUS, _THUMOS_AR_TIOUS, windowed=True, default_stride=8,
                               default_split_root="./data/Synthetic/splits", generated_on_first_use=True),
    "ActivityNet13": DatasetFamily("ActivityNet13", {"train": "train", "inference": "val"}, frozenset(), 1.0, False,
                                   False, "ActivityNet", (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
                                   tuple(np.linspace(0.5, 0.95, 10).tolist()), windowed=False,
                                   default_stride=16),
}


def family_of(dataset_name: str) -> DatasetFamily:
    try:
        return FAMILIES[dataset_name]
    except KeyError:
        raise ValueError(f"dataset_name must be one of {sorted(FAMILIES)}, got {dataset_name!r}") from None

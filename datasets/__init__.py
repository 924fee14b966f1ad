"""Datasets: the release's files -> training windows / whole videos and their targets (SPEC §2-§4).

    dataset = build_dataset(cfg, "train")          # or "inference"
    features, target, info = dataset[0]            # info: ItemInfo (video, window, offset, fps)
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_batch)
"""
from __future__ import annotations

from .activitynet import ActivityNet13Dataset
from .annotations import DataWarning, load_ground_truth
from .base import BaseDataset, FeatureFileError
from .collate import collate_batch
from .families import FAMILIES, DatasetFamily, family_of
from .items import ItemInfo
from .splits import read_split_classes
from .thumos14 import Thumos14Dataset

__all__ = [
    "FAMILIES", "ActivityNet13Dataset", "BaseDataset", "DataWarning", "DatasetFamily", "FeatureFileError",
    "ItemInfo", "Thumos14Dataset", "build_dataset", "collate_batch", "family_of", "load_ground_truth",
    "read_split_classes",
]


def build_dataset(cfg, mode: str, check_features: bool | str = True, windows: str | None = None):
    """Dataset of `cfg.dataset_name` for `mode` ("train" | "inference").

    Feature files are validated at construction (presence, shape against the info file, channels equal to
    `hidden_dim`, NaN/inf) unless `check_features` is False ("shape" skips the value scan). `windows`
    overrides the windowing policy (see `BaseDataset`).
    """
    dataset_class = Thumos14Dataset if family_of(cfg.dataset_name).windowed else ActivityNet13Dataset
    return dataset_class(cfg, mode, check_features=check_features, windows=windows,
                         expected_feature_dim=getattr(cfg, "hidden_dim", None))

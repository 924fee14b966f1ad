"""Datasets: the release's files -> training windows / whole videos and their targets (SPEC §2-§4).

    dataset = build_dataset(cfg, "train")          # or "inference"
    features, target = dataset[0]
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_batch)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .activitynet import ActivityNet13Dataset
from .annotations import DataWarning, load_ground_truth
from .base import BaseDataset, FeatureFileError
from .collate import collate_batch
from .splits import read_split_classes
from .synthetic import ensure_synthetic_dataset
from .thumos14 import Thumos14Dataset

logger = logging.getLogger("gap")  # the run log (utils.logging)

DATASETS = {"Thumos14": Thumos14Dataset, "Synthetic": Thumos14Dataset, "ActivityNet13": ActivityNet13Dataset}
# The embedded configuration (config/demo.yaml): where each file of the synthetic dataset lies under its root.
SYNTHETIC_LAYOUT = {
    "anno_file_path": "Synthetic_annotations.json",
    "feature_info_path": "CLIP/Synthetic_info_8frame.json",
    "description_file_path": "Synthetic_description_v6.json",
    "feature_path": "features",
    "split_root": "splits",
    "text_embeddings": "text_embeddings.npz",
}

__all__ = [
    "ActivityNet13Dataset", "BaseDataset", "DataWarning", "FeatureFileError", "Thumos14Dataset", "build_dataset",
    "collate_batch", "ensure_synthetic_dataset", "load_ground_truth", "prepare_synthetic", "read_split_classes",
]


def prepare_synthetic(cfg) -> None:
    """For `dataset_name Synthetic`: generate the embedded dataset (default parameters) on first use.

    Only when the configuration is the embedded one (every path of `SYNTHETIC_LAYOUT` under one root, as in
    config/demo.yaml) and the whole dataset is absent (no root folder, or an empty one). Anything else, e.g.
    a typo in one path, is left to the dataset, which names the missing file.
    """
    if cfg.dataset_name != "Synthetic" or Path(cfg.anno_file_path).is_file():
        return
    root = Path(cfg.anno_file_path).parent
    for key, relative in SYNTHETIC_LAYOUT.items():
        value = getattr(cfg, key, None)
        if value is None and key == "text_embeddings":
            continue
        if value is None or os.path.normpath(value) != os.path.normpath(root / relative):
            return
    if root.exists() and any(root.iterdir()):
        return
    logger.info("generating the synthetic dataset under %s (first use)", root)
    ensure_synthetic_dataset(root)


def build_dataset(cfg, mode: str, check_features: bool | str = True, windows: str | None = None):
    """Dataset of `cfg.dataset_name` for `mode` ("train" | "inference").

    Feature files are validated at construction (presence, shape against the info file, channels equal to
    `hidden_dim`, NaN/inf) unless `check_features` is False ("shape" skips the value scan). `windows`
    overrides the windowing policy (see `BaseDataset`).
    """
    try:
        dataset_class = DATASETS[cfg.dataset_name]
    except KeyError:
        raise ValueError(f"dataset_name must be one of {sorted(DATASETS)}, got {cfg.dataset_name!r}") from None
    prepare_synthetic(cfg)
    return dataset_class(cfg, mode, check_features=check_features, windows=windows,
                         expected_feature_dim=getattr(cfg, "hidden_dim", None))

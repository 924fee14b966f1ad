"""Datasets: the release's files -> training windows / whole videos and their targets (SPEC §2-§4).

    dataset = build_dataset(cfg, "train")          # or "inference"
    features, target = dataset[0]
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_batch)
"""
from __future__ import annotations

import logging
from pathlib import Path

from .activitynet import ActivityNet13Dataset
from .annotations import DataWarning, load_ground_truth
from .base import BaseDataset, FeatureFileError
from .collate import collate_batch
from .splits import read_split_classes
from .synthetic import ensure_synthetic_dataset
from .thumos14 import Thumos14Dataset

logger = logging.getLogger(__name__)

DATASETS = {"Thumos14": Thumos14Dataset, "Synthetic": Thumos14Dataset, "ActivityNet13": ActivityNet13Dataset}
SYNTHETIC_ANNOTATION_NAME = "Synthetic_annotations.json"

__all__ = [
    "ActivityNet13Dataset", "BaseDataset", "DataWarning", "FeatureFileError", "Thumos14Dataset", "build_dataset",
    "collate_batch", "ensure_synthetic_dataset", "load_ground_truth", "prepare_synthetic", "read_split_classes",
]


def prepare_synthetic(cfg) -> None:
    """For `dataset_name Synthetic`: generate the embedded dataset (default parameters) where the config
    expects it, if it is not there yet (its folder = the annotation file's folder)."""
    anno = Path(cfg.anno_file_path)
    if cfg.dataset_name != "Synthetic" or anno.is_file():
        return
    if anno.name != SYNTHETIC_ANNOTATION_NAME:
        raise FileNotFoundError(f"annotation file {anno} not found; the synthetic dataset is generated only into a "
                                f"folder whose annotation file is named {SYNTHETIC_ANNOTATION_NAME}")
    logger.info("generating the synthetic dataset under %s (first use)", anno.parent)
    ensure_synthetic_dataset(anno.parent)


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

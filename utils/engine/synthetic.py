"""Datasets as the entry points build them: the embedded synthetic dataset generated on first use of
config/demo.yaml, its text side from models/. The datasets themselves never load CLIP nor write files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import datasets
from datasets.families import family_of
from datasets.synthetic import CLASS_NAMES, DEFAULT_ROOT, ClassText, SyntheticConfig
from datasets.synthetic import ensure_synthetic_dataset as _ensure_dataset
from models.text_encoder import DEFAULT_LOGIT_SCALE, PROMPT_TEMPLATE, ClipTextEncoder
from utils.logging import get_logger

# The embedded configuration (config/demo.yaml): where each file of the synthetic dataset lies under its root.
SYNTHETIC_LAYOUT = {
    "anno_file_path": "Synthetic_annotations.json",
    "feature_info_path": "CLIP/Synthetic_info_8frame.json",
    "description_file_path": "Synthetic_description_v6.json",
    "feature_path": "features",
    "split_root": "splits",
    "text_embeddings": "text_embeddings.npz",
}


def class_text(clip_model_name: str | None, num_classes: int) -> ClassText:
    """The prompt template and logit scale of models/text_encoder.py; with a CLIP model, its embeddings of
    the first `num_classes` classes (logit scale then CLIP's)."""
    if not clip_model_name:
        return ClassText(PROMPT_TEMPLATE, DEFAULT_LOGIT_SCALE)
    encoder = ClipTextEncoder(model_name=clip_model_name, target_type="prompt", device="cpu", cache_dir=None)
    embeddings = encoder.encode(CLASS_NAMES[:num_classes]).numpy().astype(np.float64)
    return ClassText(PROMPT_TEMPLATE, float(encoder.logit_scale), embeddings)


def ensure_synthetic_dataset(root: str | os.PathLike = DEFAULT_ROOT, seed: int = 0, force: bool = False,
                             **sizes) -> Path:
    """`datasets.synthetic.ensure_synthetic_dataset` with the class text filled in (see `class_text`)."""
    text = class_text(sizes.get("clip_model_name"), sizes.get("num_classes", SyntheticConfig.num_classes))
    return _ensure_dataset(root, text, seed=seed, force=force, **sizes)


def prepare_synthetic(cfg) -> None:
    """For the embedded demo family: generate the dataset (default parameters) on first use.

    Only when the configuration is the embedded one (every path of `SYNTHETIC_LAYOUT` under one root, as in
    config/demo.yaml) and the whole dataset is absent (no root folder, or an empty one). Anything else, e.g.
    a typo in one path, is left to the dataset, which names the missing file.
    """
    if not family_of(cfg.dataset_name).generated_on_first_use or Path(cfg.anno_file_path).is_file():
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
    get_logger().info("generating the synthetic dataset under %s (first use)", root)
    ensure_synthetic_dataset(root)


def build_dataset(cfg, mode: str, **options):
    """`datasets.build_dataset` as the entry points call it: the embedded demo is generated first if absent
    (`prepare_synthetic`), so construction itself never writes files."""
    prepare_synthetic(cfg)
    return datasets.build_dataset(cfg, mode, **options)

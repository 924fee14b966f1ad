"""Model selection (`--select_on`): which epoch's weights become `best_<model>.pkl`.

- `test` (default, the original): best average mAP on the test set, i.e. on the unseen classes that the
  method claims to generalise to. It reproduces the paper's numbers but selects on the test set.
- `val`: a seeded fraction of the training (seen-class) videos is held out of training; every epoch the
  model is evaluated on them (seen classes, inference windows) and the best epoch by that mAP is kept. No
  test information is used.
- `last`: the final epoch.
"""
from __future__ import annotations

import numpy as np

SELECTION_LABELS = {
    "test": "selected on the TEST set (unseen classes), as the original: optimistic",
    "val": "selected on held-out seen-class training videos (no test information)",
    "last": "the last epoch (no selection)",
}


def held_out_videos(video_ids: list[str], fraction: float, seed: int) -> list[str]:
    """A seeded, order-independent choice of `fraction` of the videos (at least one, never all)."""
    if not 0 < fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1 (exclusive), got {fraction}")
    videos = sorted(set(video_ids))
    if len(videos) < 2:
        raise ValueError(f"--select_on val needs at least 2 training videos to hold some out, found {len(videos)}")
    count = min(max(1, round(fraction * len(videos))), len(videos) - 1)
    chosen = np.random.default_rng(seed).choice(len(videos), size=count, replace=False)
    return sorted(videos[i] for i in chosen)


def split_validation(cfg, train_set):
    """(training set without the held-out videos, validation set of the held-out videos).

    The validation set uses the seen classes and inference-style windows (every window, inference overlap),
    so it is scored exactly like the test set.
    """
    from datasets import build_dataset

    train_videos = sorted({train_set.videos[item.video].video_id for item in train_set.items})
    held = held_out_videos(train_videos, cfg.val_fraction, cfg.seed)
    keep = [video for video in train_videos if video not in set(held)]
    validation = build_dataset(cfg, "train", windows="inference").restrict(held)
    return train_set.restrict(keep), validation

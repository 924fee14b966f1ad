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

from datasets import build_dataset

SELECTION_LABELS = {
    "test": "selected on the TEST set (unseen classes), as the original: optimistic",
    "val": "selected on held-out seen-class training videos (no test information)",
    "last": "the last epoch (no selection)",
}


def held_out_videos(video_classes: dict[str, set], fraction: float, seed: int) -> list[str]:
    """A seeded choice of `fraction` of the videos (at least one, never all), stratified by class.

    Videos are visited in a seeded order; a video is taken first when it brings a class the held-out set
    lacks and every one of its classes keeps another training video, so that, where the data allows, each
    seen class is both trained on and validated. The rest of the quota is filled in the same order.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1 (exclusive), got {fraction}")
    videos = sorted(video_classes)
    if len(videos) < 2:
        raise ValueError(f"--select_on val needs at least 2 training videos to hold some out, found {len(videos)}")
    count = min(max(1, round(fraction * len(videos))), len(videos) - 1)
    order = [videos[i] for i in np.random.default_rng(seed).permutation(len(videos))]
    remaining = {c: sum(c in video_classes[v] for v in videos) for c in set().union(*video_classes.values())}
    held: list[str] = []
    covered: set = set()
    def take(video: str) -> None:
        held.append(video)
        covered.update(video_classes[video])
        for c in video_classes[video]:
            remaining[c] -= 1

    def trainable_without(video: str) -> bool:
        return all(remaining[c] > 1 for c in video_classes[video])

    for video in order:  # 1: new classes for validation, keeping every class trainable
        if len(held) < count and video_classes[video] - covered and trainable_without(video):
            take(video)
    for video in order:  # 2: fill the quota, still keeping every class trainable
        if len(held) < count and video not in held and trainable_without(video):
            take(video)
    held += [v for v in order if v not in held][: count - len(held)]  # 3: only if unavoidable
    return sorted(held)


def split_validation(cfg, train_set):
    """(training set without the held-out videos, validation set of the held-out videos).

    The validation set uses the seen classes and inference-style windows (every window, inference overlap),
    so it is scored exactly like the test set.
    """
    video_classes = {}
    for item in train_set.items:
        video = train_set.videos[item.video]
        video_classes[video.video_id] = set(video.labels)
    held = set(held_out_videos(video_classes, cfg.val_fraction, cfg.seed))
    keep = [video for video in sorted(video_classes) if video not in held]
    # the held-out videos' feature files were validated when `train_set` was built: no second scan
    validation = build_dataset(cfg, "train", check_features=False, windows="inference").restrict(held)
    return train_set.restrict(keep), validation

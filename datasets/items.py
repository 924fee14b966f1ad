"""The identity of one model input, as the datasets (and the detector API) cut it: typed, immutable.

It travels beside the training targets (`collate_batch` returns it as its own list) to the detection records
(`utils.scoring.evaluation.ItemDetections`), where scoring shifts and fuses detections by its fields.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """Where an item lies in its source video.

    name: the item id (window id, or the video id of a whole-video item); source_video: the video id its
    detections are scored on; duration: the normalisation basis `Dw` (seconds) the model's boxes are
    relative to; time_offset: seconds of the item start in the source video; window: inclusive snippet
    indices in the source video (None: whole video); feature_fps: snippets per second (None where unknown:
    ActivityNet items, which are never fused).
    """

    name: str
    source_video: str
    duration: float
    time_offset: float = 0.0
    window: tuple[int, int] | None = None
    feature_fps: float | None = None

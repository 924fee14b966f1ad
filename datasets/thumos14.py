"""THUMOS14 (and the embedded synthetic dataset): sliding windows over snippet features (SPEC §3)."""
from __future__ import annotations

from . import windows as T
from .base import BaseDataset, Item


class Thumos14Dataset(BaseDataset):
    """Windows of `slice_size` snippets; training windows overlap by `slice_overlap`, inference windows by
    `inference_slice_overlap` (SPEC §3.2).

    Training keeps only windows holding at least one instance that passes the 0.75 integrity filter;
    inference keeps every window of every test video (detections are mapped back to the source video with
    `time_offset`, the window start in seconds). With `inference_entire` (inference only), one item per video
    that has ground truth, not cut (SPEC §3.4).
    """

    feature_fps_of_items = True

    def _build_items(self, cfg) -> list[Item]:
        training = self.window_mode == "train"
        slice_size = int(cfg.slice_size)
        overlap = float(cfg.slice_overlap if training else cfg.inference_slice_overlap)
        entire = bool(getattr(cfg, "inference_entire", False)) and not training   # inference only
        items: list[Item] = []
        for index, video in enumerate(self.videos):
            if entire:
                if video.num_instances:
                    items.append(Item.whole_video(index, video, video.snippet_length))
                continue
            windows, win_start_s, win_end_s = T.window_spans(video.snippet_length, self.feature_fps(video),
                                                             slice_size, overlap, training)
            keep, relative = T.windows_instances(video.segments, win_start_s, win_end_s)
            for w, (start, end) in enumerate(windows.tolist()):
                if training and not keep[w].any():
                    continue
                items.append(Item(f"{video.video_id}_window_{start}_{end}", index, (start, end),
                                  float(win_start_s[w]), float(win_end_s[w] - win_start_s[w]), end - start + 1,
                                  relative[w][keep[w]], video.class_ids[keep[w]]))
        return items

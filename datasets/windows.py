"""Sliding windows and training targets, vectorised with numpy (SPEC §3.2, §3.3, §4).

Kept quirks of the original (SPEC §12, all KEEP):
- #19: a window [s, e] spans `s/ffps .. e/ffps` seconds, so its duration `Dw = e/ffps - s/ffps` covers e - s
  snippet intervals while the window holds e - s + 1 snippets; targets are normalised by `Dw`, the salient
  mask uses the snippet count.
- #20: the training tail window is shifted left to full length, the inference tail window is short.
- #21: instances cut by a window keep their clipped part only if it is >= 0.75 of the instance.
"""
from __future__ import annotations

import numpy as np

INTEGRITY_THRESHOLD = 0.75


def window_slide(slice_size: int, overlap: float) -> int:
    slide = int(slice_size * (1 - overlap))
    if slide < 1:
        raise ValueError(f"slice_size {slice_size} with overlap {overlap} gives a window stride of {slide} snippets; "
                         f"expected an overlap < 1 - 1/slice_size")
    return slide


def sliding_windows(length: int, slice_size: int, overlap: float, full_tail: bool) -> np.ndarray:
    """Inclusive snippet windows ``[W, 2]`` over a video of `length` snippets.

    `full_tail` (training) shifts a needed tail window left to `max(0, length - slice_size)`; otherwise
    (inference) the tail window starts at the next stride position and is shorter.
    """
    if length < 1:
        raise ValueError(f"video length must be >= 1 snippet, got {length}")
    if length <= slice_size:
        return np.array([[0, length - 1]], dtype=np.int64)
    slide = window_slide(slice_size, overlap)
    n = (length - slice_size) // slide + 1
    starts = np.arange(n, dtype=np.int64) * slide
    if (n - 1) * slide + slice_size < length:
        tail = max(0, length - slice_size) if full_tail else n * slide
        starts = np.append(starts, tail)
    ends = np.minimum(starts + slice_size - 1, length - 1)
    return np.stack([starts, ends], axis=1)


def window_spans(length: int, ffps: float, slice_size: int, overlap: float, training: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows of a video as the datasets and the detector API cut it: inclusive snippet windows
    ``[W, 2]`` (`sliding_windows`, the tail shifted in training) and their start and end in seconds ``[W]``
    (`s / ffps`, `e / ffps`: the offset of an item is its start, its duration `Dw` the difference, quirk 19)."""
    windows = sliding_windows(length, slice_size, overlap, full_tail=training)
    return windows, windows[:, 0] / ffps, windows[:, 1] / ffps


def windows_instances(segments: np.ndarray, win_start_s: np.ndarray, win_end_s: np.ndarray,
                      threshold: float = INTEGRITY_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Integrity filter of every instance against every window.

    Returns ``keep [W, A]`` and window-relative clipped segments ``[W, A, 2]`` (seconds). An instance is kept
    in a window when it overlaps it (not `end <= win_start` nor `start >= win_end`) and its clipped part is at
    least `threshold` of its length.
    """
    start, end = segments[None, :, 0], segments[None, :, 1]
    ws, we = win_start_s[:, None], win_end_s[:, None]
    overlaps = ~((end <= ws) | (start >= we))
    clipped_start = np.maximum(start, ws)
    clipped_end = np.minimum(end, we)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (clipped_end - clipped_start) / (end - start)
    keep = overlaps & (ratio >= threshold)
    relative = np.stack([clipped_start - ws, clipped_end - ws], axis=-1)
    return keep, relative


def segments_to_cw(segments_s: np.ndarray, duration: float) -> np.ndarray:
    """(start, end) seconds -> normalised (center, width), float32 ``[n, 2]``; not clipped to [0, 1]."""
    norm = np.asarray(segments_s, dtype=np.float64).reshape(-1, 2) / duration
    cw = np.stack([(norm[:, 0] + norm[:, 1]) / 2, norm[:, 1] - norm[:, 0]], axis=1)
    return cw.astype(np.float32)


def salient_false_ranges(segments_s: np.ndarray, duration: float, length: int) -> np.ndarray:
    """Per instance the ``[start, end)`` snippet range that is *inside* it, ``[n, 2]`` int64.

    `start = max(floor(s / Dw * T), 0)`, `end = min(ceil(e / Dw * T) + 1, T)` (the "+1" of the original:
    the span includes `ceil(e / Dw * T)`).
    """
    seg = np.asarray(segments_s, dtype=np.float64).reshape(-1, 2)
    a = np.floor(seg[:, 0] / duration * length)
    b = np.ceil(seg[:, 1] / duration * length) + 1
    return np.stack([np.maximum(a, 0), np.minimum(b, length)], axis=1).astype(np.int64)


def salient_mask(segments_s: np.ndarray, duration: float, length: int) -> np.ndarray:
    """Bool ``[n, T]``: True outside the instance, False inside (SPEC §3.3)."""
    ranges = salient_false_ranges(segments_s, duration, length)
    pos = np.arange(length)[None, :]
    return ~((pos >= ranges[:, :1]) & (pos < ranges[:, 1:]))

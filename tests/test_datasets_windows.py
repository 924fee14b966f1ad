"""Sliding windows, integrity filter and target construction (datasets/windows.py, SPEC §3.2-§3.3)."""
from __future__ import annotations

import numpy as np
import pytest

from datasets import windows as T

FFPS = 30 / 8


def test_windows_worked_example_spec():
    # SPEC §3.2 / Appendix B.6, L = 251
    train = T.sliding_windows(251, 128, 0.75, full_tail=True)
    infer = T.sliding_windows(251, 128, 0.25, full_tail=False)
    assert train.tolist() == [[0, 127], [32, 159], [64, 191], [96, 223], [123, 250]]
    assert infer.tolist() == [[0, 127], [96, 223], [192, 250]]
    durations = infer[:, 1] / FFPS - infer[:, 0] / FFPS
    np.testing.assert_allclose(durations, [33.8667, 33.8667, 15.4667], atol=1e-4)
    np.testing.assert_allclose(infer[:, 0] / FFPS, [0, 25.6, 51.2])


@pytest.mark.parametrize("length", [1, 50, 127, 128])
def test_video_not_longer_than_a_window_gives_one_window(length):
    for full_tail in (True, False):
        assert T.sliding_windows(length, 128, 0.75, full_tail).tolist() == [[0, length - 1]]


def test_windows_just_over_one_window():
    assert T.sliding_windows(129, 128, 0.75, True).tolist() == [[0, 127], [1, 128]]
    assert T.sliding_windows(129, 128, 0.25, False).tolist() == [[0, 127], [96, 128]]
    # exact fit: no tail window
    assert T.sliding_windows(160, 128, 0.75, True).tolist() == [[0, 127], [32, 159]]


def test_window_overlap_one_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        T.sliding_windows(300, 128, 1.0, True)


def test_integrity_filter_threshold_and_touching():
    ws, we = np.array([0.0, 25.6]), np.array([127 / FFPS, 223 / FFPS])   # [0, 33.867], [25.6, 59.467]
    segments = np.array([
        [31.0, 35.0],      # window 0 keeps 2.867/4 = 0.717 < 0.75 -> dropped there; inside window 1
        [33.0, 34.0],      # window 0 keeps 0.867 >= 0.75 -> kept, clipped
        [10.0, 25.6],      # ends exactly at window 1's start -> not in window 1
        [59.4667, 70.0],   # starts just after window 1's end (59.4666..)
    ])
    keep, rel = T.windows_instances(segments, ws, we)
    assert keep.tolist() == [[False, True, True, False], [True, True, False, False]]
    np.testing.assert_allclose(rel[0, 1], [33.0, 127 / FFPS])
    np.testing.assert_allclose(rel[1, 0], [31.0 - 25.6, 35.0 - 25.6])


def test_integrity_ratio_exactly_threshold_is_kept():
    # instance [30, 34] in window [0, 33]: clipped 3/4 = 0.75 -> kept (>=)
    keep, _ = T.windows_instances(np.array([[30.0, 34.0]]), np.array([0.0]), np.array([33.0]))
    assert keep.tolist() == [[True]]


def test_segments_to_cw_not_clipped():
    cw = T.segments_to_cw(np.array([[1.0, 3.0], [8.0, 12.0]]), 10.0)
    assert cw.dtype == np.float32
    np.testing.assert_allclose(cw, [[0.2, 0.2], [1.0, 0.4]])
    assert T.segments_to_cw(np.zeros((0, 2)), 10.0).shape == (0, 2)


def test_salient_mask_span_includes_ceil_end_and_clips():
    # a = 1.0/10*20 = 2 -> 2 ; b = 3.1/10*20 = 6.2 -> ceil 7, +1 -> end 8 (exclusive)
    mask = T.salient_mask(np.array([[1.0, 3.1], [-0.5, 0.2], [9.0, 10.0]]), 10.0, 20)
    assert mask.shape == (3, 20) and mask.dtype == bool
    assert np.flatnonzero(~mask[0]).tolist() == list(range(2, 8))
    assert np.flatnonzero(~mask[1]).tolist() == [0, 1]                # start clipped at 0
    assert np.flatnonzero(~mask[2]).tolist() == [18, 19]              # end clipped at T

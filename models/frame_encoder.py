"""CLIP image features per snippet of one video: the extraction step shared by scripts/extract_features.py
and the Python API (utils/engine/detector.py, which scripts/localize.py runs)."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.clip_loading import clip_input_resolution, load_clip, preprocess_frames
from utils.device import resolve_device
from utils.io import atomic_write_bytes
from utils.video import (
    SnippetAccumulator,
    VideoDecodeError,
    VideoReader,
    frame_selector,
    iter_batches,
    prefetch,
    snippet_info,
)


class ClipFrameEncoder:
    """CLIP image tower applied to batches of decoded uint8 frames; safe to call from several threads (the
    device work is serialised, so videos decoded in parallel share one model)."""

    def __init__(self, model_name: str, device: str | torch.device | None, download_root: str | None = None):
        self.device = resolve_device(device)
        self.model = load_clip(model_name, self.device, download_root)
        self.n_px = clip_input_resolution(self.model)
        self.dtype = self.model.visual.conv1.weight.dtype  # float16 on CUDA, float32 on CPU
        self.dim = int(self.model.visual.output_dim)
        self._lock = threading.Lock()

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """`[N,H,W,3]` uint8 RGB -> `[N,D]` float32 image features (not normalised)."""
        batch = torch.from_numpy(frames)  # pinning it measured no faster (per-batch pinned allocations)
        with self._lock:
            images = preprocess_frames(batch.to(self.device), self.n_px).to(self.dtype)
            return self.model.encode_image(images).float().cpu().numpy()


def extract_video_features(path: str | Path, encoder: ClipFrameEncoder, frames_per_snippet: int,
                           reduce: str = "mean", batch_size: int = 64, show_progress: bool = False,
                           ) -> tuple[np.ndarray, dict]:
    """Per-snippet CLIP features `[snippet_length, D]` float32 and the info entry of one video."""
    reader = VideoReader(path)
    accumulator = SnippetAccumulator(frames_per_snippet, reduce)
    frames = reader.frames(frame_selector(frames_per_snippet, reduce))
    bar = tqdm(desc=Path(path).name, unit="frame", leave=False, disable=not show_progress)
    with bar:
        for batch in prefetch(iter_batches(frames, batch_size), depth=2):
            indices = np.array([index for index, _ in batch])
            try:
                images = np.stack([image for _, image in batch])
            except ValueError as err:
                raise VideoDecodeError(f"{path}: frame size changes inside the video ({err})") from err
            accumulator.add(indices, encoder(images))
            bar.update(len(batch))
    frame_length = reader.frame_length
    if frame_length is None or frame_length < frames_per_snippet:
        raise VideoDecodeError(f"{path}: {frame_length} frames, fewer than one snippet of {frames_per_snippet}")
    return accumulator.result(frame_length), snippet_info(frame_length, frames_per_snippet, reader.fps)


def save_features(path: Path, features: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=np.float32))
    atomic_write_bytes(path, buffer.getvalue())

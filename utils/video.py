"""Video decoding (PyAV) and the snippet arithmetic of the release's feature-info files.

Snippet arithmetic (verified on all 15,362 entries of the release's info JSONs, SPEC §2.2): a video of
`frame_length` decoded frames at `video_fps` with `stride` frames per snippet has
`snippet_length = floor(frame_length / stride)` snippets; snippet i covers frames [i*stride, (i+1)*stride);
trailing frames that do not fill a snippet are dropped. `snippet_duration = snippet_length * stride / fps`
and `frame_duration = (frame_length - 1) / fps` (the time of the last frame; exact on every release entry).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
REDUCTIONS = ("mean", "center")
INFO_KEYS = ("frame_length", "snippet_length", "video_fps", "frame_duration", "snippet_duration")


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded (reported per video by the extraction script)."""


def snippet_info(frame_length: int, stride: int, video_fps: float) -> dict:
    """One feature-info entry in the release's format (SPEC §2.2)."""
    if stride < 1:
        raise ValueError(f"frames per snippet must be >= 1, got {stride}")
    if video_fps <= 0:
        raise ValueError(f"video fps must be > 0, got {video_fps}")
    snippet_length = frame_length // stride
    return {
        "frame_length": int(frame_length),
        "snippet_length": int(snippet_length),
        "video_fps": float(video_fps),
        "frame_duration": (frame_length - 1) / video_fps,
        "snippet_duration": snippet_length * stride / video_fps,
    }


def center_offset(stride: int) -> int:
    """Index, inside a snippet, of the frame used by `--reduce center` (the later of the two middle frames)."""
    return stride // 2


class SnippetAccumulator:
    """Reduces per-frame features to per-snippet features while frames stream in (memory: one row per snippet).

    `mean`: snippet i is the mean of the features of frames [i*stride, (i+1)*stride) (summed in float64).
    `center`: snippet i is the feature of frame i*stride + stride//2 (only those frames need encoding, see
    `frame_selector`). Snippets that the video does not fill completely are dropped by `result()`.
    """

    def __init__(self, stride: int, reduce: str):
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
        if stride < 1:
            raise ValueError(f"frames per snippet must be >= 1, got {stride}")
        self.stride, self.reduce = stride, reduce
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (snippet ids, sums, frame counts)

    def add(self, frame_indices, features: np.ndarray) -> None:
        """Features `[k, D]` of the decoded frames `frame_indices` (any order, each frame once)."""
        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        features = np.asarray(features, dtype=np.float64)
        if self.reduce == "center":
            keep = frame_indices % self.stride == center_offset(self.stride)
            frame_indices, features = frame_indices[keep], features[keep]
        snippets, inverse, counts = np.unique(frame_indices // self.stride, return_inverse=True,
                                              return_counts=True)
        sums = np.zeros((len(snippets), features.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, features)
        self._parts.append((snippets, sums, counts))

    def result(self, frame_length: int) -> np.ndarray:
        """Features `[floor(frame_length / stride), D]` float32."""
        n = frame_length // self.stride
        if not self._parts:
            raise ValueError("no frame features were added")
        dim = self._parts[0][1].shape[1]
        total = np.zeros((n, dim), dtype=np.float64)
        frames = np.zeros(n, dtype=np.int64)
        for snippets, sums, counts in self._parts:
            inside = snippets < n
            np.add.at(total, snippets[inside], sums[inside])
            np.add.at(frames, snippets[inside], counts[inside])
        expected = self.stride if self.reduce == "mean" else 1
        if not (frames == expected).all():
            bad = np.flatnonzero(frames != expected)[:10].tolist()
            raise ValueError(f"snippets {bad} received {frames[bad].tolist()} frames, expected {expected} each")
        return (total / expected).astype(np.float32)


def frame_selector(stride: int, reduce: str) -> Callable[[int], bool]:
    """Which decoded frames the snippet reduction needs (all for mean, one per snippet for center)."""
    if reduce == "mean":
        return lambda index: True
    if reduce == "center":
        offset = center_offset(stride)
        return lambda index: index % stride == offset
    raise ValueError(f"reduce must be 'mean' or 'center', got {reduce!r}")


class VideoReader:
    """Streams RGB frames of the first video stream of a file with PyAV.

    Frames are decoded one by one (no whole-video buffer), so memory stays flat for hour-long videos.
    `frame_length` (number of decoded frames) is known once `frames()` has been exhausted.
    """

    def __init__(self, path: str | Path, threads: bool = True):
        import av  # imported here so that modules using only the snippet arithmetic do not need PyAV

        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except Exception as err:  # noqa: BLE001 - PyAV raises several error types (FFmpegError, OSError)
            raise VideoDecodeError(f"cannot open {self.path}: {err}") from err
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        if threads:
            self._stream.thread_type = "AUTO"  # frame + slice threading inside FFmpeg
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate or float(rate) <= 0:
            self._container.close()
            raise VideoDecodeError(f"{self.path}: the video stream reports no frame rate")
        self.fps = float(rate)
        self.frame_length: int | None = None

    def frames(self, keep: Callable[[int], bool] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(index, frame [H,W,3] uint8)` for decoded frames with `keep(index)` true (all by default)."""
        count = 0
        try:
            for frame in self._container.decode(self._stream):
                if keep is None or keep(count):
                    yield count, frame.to_ndarray(format="rgb24")
                count += 1
        except Exception as err:  # noqa: BLE001 - corrupt packets surface as various FFmpeg errors
            raise VideoDecodeError(f"decoding {self.path} failed after {count} frames: {err}") from err
        finally:
            self._container.close()
        if count == 0:
            raise VideoDecodeError(f"{self.path}: no frame could be decoded")
        self.frame_length = count


def iter_batches(items: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def prefetch(iterator: Iterable, depth: int = 2) -> Iterator:
    """Run `iterator` in a background thread, `depth` items ahead (FFmpeg decoding releases the GIL,
    so decoding the next batch overlaps with encoding the current one). Exceptions are re-raised here."""
    done = object()
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put((item, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            items.put((None, err))
            return
        items.put((done, None))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item, err = items.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def list_videos(source: str | Path) -> list[Path]:
    """Videos of a folder (by extension, sorted), of a text list (one path a line, relative paths taken
    from the list's folder, blank lines and '#' comments skipped), or a single video file."""
    source = Path(source).expanduser()
    if source.is_dir():
        videos = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in folder {source}")
        return videos
    if not source.is_file():
        raise FileNotFoundError(f"--videos {source}: no such folder or file")
    if source.suffix.lower() in VIDEO_EXTENSIONS:
        return [source]
    videos = []
    for line in source.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        videos.append(path if path.is_absolute() else source.parent / path)
    if not videos:
        raise ValueError(f"video list {source} names no video")
    return videos


def video_id(path: str | Path) -> str:
    """Feature files and info entries are keyed by the file name without extension (e.g. v_xxx)."""
    return Path(path).stem

"""Python API: load a trained GAP run once, then localize free-text action classes in features or videos.

    from utils.engine.detector import Detector

    detector = Detector.from_run("logs/Thumos14/Train_Thumos14_config.yaml", "ckpt/Thumos14/best_Train_Thumos14.pkl")
    found = detector.localize("my_video.mp4", ["high jump", "pole vault"])   # CLIP features, then detection
    found.rows()[:3]          # [{"start": 12.3, "end": 17.9, "label": "high jump", "score": 0.41}, ...]
    found.to_srt()            # subtitles; found.to_csv(), found.results_json() (ActivityNet results format)
    detector.detect(features, ["high jump"], info)   # features already extracted: [T, D] + feature-info entry

`scripts/localize.py` is a thin command line over this class, so the API returns exactly the detections
that the CLI writes. Why here and not a top-level module: the repository keeps its layout (main.py, test.py,
models/, datasets/, utils/, scripts/), and `utils/` already holds everything a run is made of (config,
checkpoints, engine, fusion); run notebooks from the repository root (or put it on `sys.path`).

What `detect` does, step for step as evaluation does it (SPEC §3, §8.3):
- THUMOS14-style configs: sliding windows of `slice_size` snippets overlapping by `inference_slice_overlap`,
  merged with the evaluation's cross-window NMS; ActivityNet13 configs: the whole video resampled to
  `rescale_length` snippets (0: kept as is);
- the exact duplicates that the window fusion can emit are removed, then an optional per-class NMS over the
  whole video (`nms_threshold`, default 0.5; 0 = off); rows are sorted by score.
"""
from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datasets.activitynet import rescale_features
from datasets.annotations import load_descriptions
from datasets.collate import collate_batch
from datasets.families import family_of
from datasets.items import ItemInfo
from datasets.windows import window_spans
from models.build import build_model, build_postprocessor
from models.clip_loading import clip_identity
from models.frame_encoder import ClipFrameEncoder, extract_video_features, save_features
from models.text_encoder import build_text_encoder, check_embedding_dim, parse_class_list
from utils.config import get_args_parser, parse_config, validate_value
from utils.device import resolve_device
from utils.engine.checkpoint import load_model_weights
from utils.engine.compiled import compiled
from utils.engine.loop import predict
from utils.io import atomic_write_json
from utils.scoring.evaluation import results_json
from utils.scoring.fusion import cross_window_fusion, suppressed_by_nms
from utils.video import REDUCTIONS, video_id

# ------------------------------------------------------------------------------------------------ results

@dataclass
class Detections:
    """Detections of one video, best first: `segments` [n,2] seconds, `scores` [n], `labels` [n] (indices
    into `classes`); `duration` is the video's length in seconds, `num_inputs` the model inputs it took."""

    video: str
    classes: list[str]
    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    duration: float
    snippet_length: int
    num_inputs: int

    def __len__(self) -> int:
        return len(self.scores)

    def rows(self) -> list[dict]:
        """One dict per detection (start/end rounded to 0.1 ms) for the CSV and the printed table."""
        return [{"start": round(float(s), 4), "end": round(float(e), 4), "label": self.classes[int(c)],
                 "score": float(p)} for (s, e), c, p in zip(self.segments, self.labels, self.scores)]

    def results_json(self) -> dict:
        """ActivityNet results format, written by the evaluation's writer (as main.py/test.py write it;
        scripts/evaluate.py reads it)."""
        merged = {self.video: {"segments": self.segments, "scores": self.scores, "labels": self.labels}}
        return results_json(merged, self.classes)

    def to_csv(self) -> str:
        """All detections, best first: rank, start_s, end_s, duration_s, label, score."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "start_s", "end_s", "duration_s", "label", "score"])
        for rank, r in enumerate(self.rows(), start=1):
            writer.writerow([rank, f"{r['start']:.3f}", f"{r['end']:.3f}", f"{r['end'] - r['start']:.3f}",
                             r["label"], f"{r['score']:.6g}"])
        return buffer.getvalue()

    def to_srt(self, top: int = 10) -> str:
        """SubRip subtitles of the `top` best detections in time order ("#rank label score"); players stack
        overlapping ones. Every detection is in the JSON/CSV: a subtitle per detection would be unreadable."""
        chosen = sorted(range(min(top, len(self))), key=lambda i: (self.segments[i][0], i))
        blocks = []
        for number, i in enumerate(chosen, start=1):
            start, end = (float(t) for t in self.segments[i])
            blocks.append(f"{number}\n{_srt_time(start)} --> {_srt_time(max(end, start + 0.001))}\n"
                          f"#{i + 1} {self.classes[int(self.labels[i])]} {format_score(self.scores[i])}\n")
        return "\n".join(blocks)


def _srt_time(seconds: float) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"


def format_score(score: float) -> str:
    """Three significant digits: 0.873, 0.0412, 3.1e-05 (a fixed '.2f' prints small scores as 0.00)."""
    return f"{float(score):.3g}"


# ------------------------------------------------------------------------------------------------ steps

def model_items(features: np.ndarray, info: dict, cfg) -> list[tuple[torch.Tensor, dict, ItemInfo]]:
    """Inputs as the inference datasets build them: THUMOS14-style windows or one rescaled ActivityNet item,
    each `(features, {} (no training targets), ItemInfo)` as `collate_batch` takes them."""
    length = int(info["snippet_length"])
    if length < 2:
        raise ValueError(f"{length} snippet(s) of {cfg.feature_stride} frames; localization needs >= 2")
    tensor = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    whole = float(info["snippet_duration"])
    if not family_of(cfg.dataset_name).windowed:  # the datasets ignore rescale_length for THUMOS14 (SPEC §3.3)
        rescale = int(getattr(cfg, "rescale_length", 0) or 0)
        item = rescale_features(tensor, rescale) if rescale else tensor
        return [(item, {}, ItemInfo("whole video", "video", whole))]
    ffps = float(info["video_fps"]) / int(cfg.feature_stride)
    if getattr(cfg, "inference_entire", False):  # one whole-video item, as Thumos14Dataset cuts it
        return [(tensor, {}, ItemInfo("whole video", "video", whole, feature_fps=ffps))]
    windows, start_s, end_s = window_spans(length, ffps, int(cfg.slice_size), float(cfg.inference_slice_overlap),
                                           training=False)
    return [(tensor[start:end + 1], {}, ItemInfo(f"window {start}-{end}", "video", float(end_s[w] - start_s[w]),
                                                 float(start_s[w]), (start, end), ffps))
            for w, (start, end) in enumerate(windows.tolist())]


def predict_items(model, postprocessor, items, text_embeddings: torch.Tensor, device: torch.device, cfg):
    """Per-item detections of the evaluation's inference pass (`utils.engine.loop.predict`: `--amp`,
    `--filter_threshold`), shifted to video seconds: (segments [n,2], scores [n], labels [n], item [n])."""
    loader = DataLoader(items, batch_size=int(cfg.batch_size), collate_fn=collate_batch)
    records = predict(model, postprocessor, loader, text_embeddings, device, amp=cfg.amp, desc="localize",
                      filter_threshold=cfg.filter_threshold)
    segments = [r.segments.astype(np.float64).reshape(-1, 2) + r.info.time_offset for r in records]
    scores = [r.scores.astype(np.float64) for r in records]
    labels = [r.labels.astype(np.int64) for r in records]
    owner = np.repeat(np.arange(len(records)), [len(r) for r in scores])
    return np.concatenate(segments), np.concatenate(scores), np.concatenate(labels), owner


def merge_detections(segments, scores, labels, owner, items, nms_threshold: float, fuse_windows: bool):
    """Cross-window fusion as in evaluation (SPEC §8.3) when `fuse_windows` (the family's decision,
    `DatasetFamily.fuses_windows`), exact duplicates removed, optional per-class NMS; rows sorted by score
    (descending)."""
    infos = [info for _, _, info in items]
    if fuse_windows:
        rows = cross_window_fusion(np.zeros(len(scores), np.int64), owner, segments, scores, labels,
                                   np.zeros(len(infos), np.int64), [i.window[0] for i in infos],
                                   [i.window[1] for i in infos], [i.feature_fps for i in infos])
        segments, scores, labels = segments[rows], scores[rows], labels[rows]
    # a detection touching two window overlaps is emitted twice by the fusion (quirk 24): keep one
    _, unique = np.unique(np.column_stack([segments, labels]), axis=0, return_index=True)
    unique = np.sort(unique)
    segments, scores, labels = segments[unique], scores[unique], labels[unique]
    if nms_threshold > 0 and len(scores):
        keep = ~suppressed_by_nms(labels, segments, scores, nms_threshold)
        segments, scores, labels = segments[keep], scores[keep], labels[keep]
    order = np.argsort(-scores, kind="stable")
    return segments[order], scores[order], labels[order]


# ------------------------------------------------------------------------------------------------ detector

class Detector:
    """A trained GAP detector with its text side and feature extractor, built once.

    `cfg`: the run's configuration (e.g. `utils.config.load_config` of the `*_config.yaml` main.py saves)
    with `cfg.ckpt` the detector weights. The model is built and its checkpoint loaded here, so a checkpoint
    that does not fit the flags fails before any video is decoded. `reduce` must match how the training
    features were extracted; `feature_dir` keeps each video's features for reuse (None: extract every time);
    `raw_prompts` encodes class names as given instead of the training prompt.
    """

    def __init__(self, cfg, reduce: str = "mean", nms_threshold: float = 0.5, raw_prompts: bool = False,
                 feature_dir: str | Path | None = None, extract_batch_size: int = 64):

        if not getattr(cfg, "ckpt", None):
            raise ValueError("--ckpt is required: the trained detector's weights (e.g. ckpt/Thumos14/best_<model>.pkl)")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
        self.cfg = cfg = copy.copy(cfg)
        if raw_prompts:
            cfg.target_type = "name"
        self.device = resolve_device(cfg.device)
        cfg.device = str(self.device)
        self.reduce, self.nms_threshold, self.extract_batch_size = reduce, float(nms_threshold), extract_batch_size
        self.feature_dir = Path(feature_dir).expanduser() if feature_dir is not None else None
        self.model = build_model(cfg)
        load_model_weights(self.model, cfg.ckpt)
        self.model.to(self.device)
        self._predicting = compiled(self.model, bool(getattr(cfg, "compile", False)), self.device)  # --compile
        self.postprocessor = build_postprocessor(cfg)
        self.text_encoder = build_text_encoder(cfg)
        self._descriptions = None

    @classmethod
    def from_run(cls, cfg_path: str | Path, ckpt: str | Path, **options) -> Detector:
        """Detector of a training run: its saved configuration (`logs/<dataset>/<model>_config.yaml`) and a
        checkpoint. `options` are Detector arguments (reduce, nms_threshold, ...) or configuration flags
        (device, batch_size, CLIP_model_name, text_embeddings, ...) that replace the saved values."""
        cfg = parse_config(["--cfg_path", str(cfg_path), "--ckpt", str(ckpt)], get_args_parser())
        detector_args = {k: options.pop(k) for k in list(options)
                         if k in ("reduce", "nms_threshold", "raw_prompts", "feature_dir", "extract_batch_size")}
        for key, value in options.items():
            setattr(cfg, key, validate_value(key, value, "Detector.from_run()"))
        return cls(cfg, **detector_args)

    # -- text
    def text_embeddings(self, classes: list[str]) -> torch.Tensor:
        """Class text embeddings [N, hidden_dim] (the training prompt around each name, cached on disk)."""
        cfg = self.cfg
        if cfg.target_type == "description" and not cfg.text_embeddings and self._descriptions is None:

            self._descriptions = load_descriptions(cfg.description_file_path, required=True)
        embeddings = self.text_encoder.encode(classes, self._descriptions)
        # the model compares text with features of width hidden_dim (checked against the video features too)
        check_embedding_dim(embeddings, cfg.hidden_dim, self.text_encoder.source)
        return embeddings

    # -- features
    def features(self, video_path: str | Path) -> tuple[np.ndarray, dict]:
        """CLIP features [snippets, D] of a video and its feature-info entry; reused from `feature_dir` when
        they were extracted there with the same video, CLIP model, snippet length and reduction."""

        video_path = Path(video_path)
        if not video_path.is_file():
            raise FileNotFoundError(f"--video {video_path}: file not found")
        cfg = self.cfg
        settings = {"video": str(video_path.resolve()), "video_size": video_path.stat().st_size,
                    "CLIP": clip_identity(cfg.CLIP_model_name), "frames_per_snippet": int(cfg.feature_stride),
                    "reduce": self.reduce}
        vid = video_id(video_path)
        if self.feature_dir is not None:
            feature_file = self.feature_dir / f"{vid}_features.npy"
            info_file = self.feature_dir / f"{vid}_features.json"
            if feature_file.is_file() and info_file.is_file():
                stored = json.loads(info_file.read_text())
                if stored.get("settings") == settings:
                    print(f"reusing features {feature_file}")
                    return np.load(feature_file), stored["info"]
        encoder = ClipFrameEncoder(cfg.CLIP_model_name, cfg.device, getattr(cfg, "clip_download_root", None))
        features, info = extract_video_features(video_path, encoder, int(cfg.feature_stride), self.reduce,
                                                self.extract_batch_size, show_progress=True)
        del encoder
        if self.feature_dir is not None:
            self.feature_dir.mkdir(parents=True, exist_ok=True)
            save_features(feature_file, features)
            atomic_write_json(info_file, {"settings": settings, "info": info}, indent=2)
        return features, info

    # -- detection
    def detect(self, features: np.ndarray, classes: list[str] | str, info: dict, video: str = "video",
               ) -> Detections:
        """Detections of `classes` (a list, or a comma-separated string) in one video's features.

        `features`: [snippets, hidden_dim] CLIP features of `feature_stride` frames each; `info`: the video's
        feature-info entry (`video_fps`, `snippet_length`, `snippet_duration`, `frame_duration`), e.g. from
        the info JSON of scripts/extract_features.py or `utils.video.snippet_info(frames, stride, fps)`.
        """
        classes = parse_class_list(classes) if isinstance(classes, str) else list(classes)
        text = self.text_embeddings(classes)
        return self._detect(np.asarray(features), classes, info, video, text)

    def _detect(self, features: np.ndarray, classes: list[str], info: dict, video: str, text) -> Detections:
        if features.ndim != 2 or features.shape[1] != self.cfg.hidden_dim:
            raise ValueError(f"{video}: features of shape {tuple(features.shape)}, expected [snippets, "
                             f"{self.cfg.hidden_dim}] (hidden_dim): use the CLIP model the checkpoint was trained with")
        items = model_items(features, info, self.cfg)
        raw = predict_items(self._predicting, self.postprocessor, items, text, self.device, self.cfg)
        segments, scores, labels = merge_detections(*raw, items, self.nms_threshold,
                                                    family_of(self.cfg.dataset_name).fuses_windows(self.cfg))
        duration = max(float(info.get("frame_duration", 0.0)), float(info["snippet_duration"]))
        return Detections(video, classes, segments, scores, labels, duration, int(info["snippet_length"]),
                          len(items))

    def localize(self, video_path: str | Path, classes: list[str] | str) -> Detections:
        """CLIP features of the video (see `features`), then `detect`; the text is encoded first, so a bad
        class list or embeddings file fails before the video is decoded."""
        classes = parse_class_list(classes) if isinstance(classes, str) else list(classes)
        text = self.text_embeddings(classes)
        features, info = self.features(video_path)
        return self._detect(features, classes, info, video_id(video_path), text)

"""Open-vocabulary localization in one video: free-text classes in, timed detections out (no ground truth).

    python scripts/localize.py --video my_video.mp4 --classes "high jump, pole vault, long jump" \
        --cfg_path logs/Thumos14/Train_Thumos14_config.yaml --ckpt ckpt/Thumos14/best_Train_Thumos14.pkl

Steps: CLIP image features per snippet of `--feature_stride` frames (as scripts/extract_features.py; kept in
`--out_dir` and reused on the next run), the detector of `--ckpt` (built from the same flags / YAML as its
training run, e.g. the `*_config.yaml` that main.py saves beside its log), class text embeddings of the
given classes ("a video of a person doing {class}" unless `--raw_prompts`; or `--text_embeddings`), then:
- THUMOS14-style configs: sliding windows of `slice_size` snippets overlapping by `inference_slice_overlap`,
  merged with the evaluation's cross-window NMS; ActivityNet13 configs: the whole video resampled to
  `rescale_length` snippets (0: kept as is), as in evaluation;
- optional per-class NMS over the whole video (`--nms_threshold`, default 0.5; 0 keeps the fused output, minus
  the exact duplicates that the fusion can emit).
Writes `<out_dir>/<video>_detections.json` (ActivityNet results format, times in seconds) and
`<out_dir>/<video>_timeline.png`, and prints the top detections.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.text_encoder import build_text_encoder, check_embedding_dim, parse_class_list  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.clip_loading import clip_identity  # noqa: E402
from utils.config import get_args_parser, parse_config  # noqa: E402
from utils.io import atomic_write_json  # noqa: E402
from utils.run import resolve_device  # noqa: E402
from utils.video import REDUCTIONS, video_id  # noqa: E402

logger = logging.getLogger("localize")


def get_parser() -> argparse.ArgumentParser:
    parser = get_args_parser("GAP: localize free-text action classes in one video")
    group = parser.add_argument_group("localize.py")
    group.add_argument("--video", required=True, help="video file to analyse")
    group.add_argument("--classes", required=True, help='comma-separated class names, e.g. "high jump, pole vault"')
    group.add_argument("--out_dir", default="./results/localize", help="where the JSON, PNG and features go")
    group.add_argument("--raw_prompts", action="store_true",
                       help="encode the class names as given instead of 'a video of a person doing {class}'")
    group.add_argument("--nms_threshold", type=float, default=0.5,
                       help="per-class NMS over the whole video (tIoU above which the lower-scored detection "
                            "is dropped); 0 = off: the output as fused in evaluation, exact duplicates removed")
    group.add_argument("--top", type=int, default=10, help="detections printed and labelled on the timeline")
    group.add_argument("--reduce", default="mean", choices=REDUCTIONS, help="frame pooling inside a snippet "
                       "(must match how the checkpoint's training features were extracted)")
    group.add_argument("--extract_batch_size", type=int, default=64, help="frames per CLIP forward pass")
    return parser


# ------------------------------------------------------------------------------------------------ features

def video_features(cfg, out_dir: Path) -> tuple[np.ndarray, dict]:
    """Snippet features of `cfg.video` (reused from `out_dir` when extracted with the same settings)."""
    from scripts.extract_features import ClipFrameEncoder, extract_video_features, save_features

    vid = video_id(cfg.video)
    feature_file, info_file = out_dir / f"{vid}_features.npy", out_dir / f"{vid}_features.json"
    settings = {"video": str(Path(cfg.video).resolve()), "video_size": Path(cfg.video).stat().st_size,
                "CLIP": clip_identity(cfg.CLIP_model_name), "frames_per_snippet": int(cfg.feature_stride),
                "reduce": cfg.reduce}
    if feature_file.is_file() and info_file.is_file():
        stored = json.loads(info_file.read_text())
        if stored.get("settings") == settings:
            print(f"reusing features {feature_file}")
            return np.load(feature_file), stored["info"]
    encoder = ClipFrameEncoder(cfg.CLIP_model_name, cfg.device, getattr(cfg, "clip_download_root", None))
    features, info = extract_video_features(cfg.video, encoder, int(cfg.feature_stride), cfg.reduce,
                                            cfg.extract_batch_size, show_progress=True)
    del encoder
    save_features(feature_file, features)
    atomic_write_json(info_file, {"settings": settings, "info": info}, indent=2)
    return features, info


def model_items(features: np.ndarray, info: dict, cfg) -> list[tuple[torch.Tensor, dict]]:
    """Inputs as the inference datasets build them: THUMOS14-style windows or one rescaled ActivityNet item."""
    from datasets.activitynet import rescale_features
    from datasets.targets import sliding_windows

    length = int(info["snippet_length"])
    if length < 2:
        raise ValueError(f"{cfg.video}: {length} snippet(s) of {cfg.feature_stride} frames; localization needs >= 2")
    tensor = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if cfg.dataset_name == "ActivityNet13":  # the datasets ignore rescale_length for THUMOS14 (SPEC §3.3)
        rescale = int(getattr(cfg, "rescale_length", 0) or 0)
        item = rescale_features(tensor, rescale) if rescale else tensor
        return [(item, {"video_name": "whole video", "video_duration": float(info["snippet_duration"]),
                        "time_offset": 0.0, "window": None, "feature_fps": None})]
    ffps = float(info["video_fps"]) / int(cfg.feature_stride)
    if getattr(cfg, "inference_entire", False):
        windows = np.array([[0, length - 1]])
    else:
        windows = sliding_windows(length, int(cfg.slice_size), float(cfg.inference_slice_overlap), full_tail=False)
    # Window [s, e] spans s/ffps .. e/ffps seconds, its duration (e - s)/ffps (SPEC §3.2, quirk 19).
    return [(tensor[start:end + 1], {"video_name": f"window {start}-{end}", "video_duration": (end - start) / ffps,
                                     "time_offset": start / ffps, "window": (start, end), "feature_fps": ffps})
            for start, end in windows.tolist()]


# ------------------------------------------------------------------------------------------------ detection

def detect(model, postprocessor, items, text_embeddings: torch.Tensor, device: torch.device, cfg):
    """Per-item detections of the evaluation's inference pass (`utils.engine.predict`: `--amp`,
    `--filter_threshold`), shifted to video seconds: (segments [n,2], scores [n], labels [n], item [n])."""
    from torch.utils.data import DataLoader

    from datasets.collate import collate_batch
    from utils.engine import predict

    loader = DataLoader(items, batch_size=int(cfg.batch_size), collate_fn=collate_batch)
    records = predict(model, postprocessor, loader, text_embeddings, device, amp=cfg.amp, desc="localize",
                      filter_threshold=cfg.filter_threshold)
    segments = [r["segments"].astype(np.float64).reshape(-1, 2) + r["time_offset"] for r in records]
    scores = [r["scores"].astype(np.float64) for r in records]
    labels = [r["labels"].astype(np.int64) for r in records]
    owner = np.repeat(np.arange(len(records)), [len(r) for r in scores])
    return np.concatenate(segments), np.concatenate(scores), np.concatenate(labels), owner


def merge_detections(segments, scores, labels, owner, items, nms_threshold: float):
    """Cross-window fusion as in evaluation (SPEC §8.3), exact duplicates removed, optional per-class NMS;
    rows sorted by score (descending)."""
    from utils.fusion import cross_window_fusion, suppressed_by_nms

    windows = [meta["window"] for _, meta in items]
    if len(items) > 1 and all(w is not None for w in windows):
        rows = cross_window_fusion(np.zeros(len(scores), np.int64), owner, segments, scores, labels,
                                   np.zeros(len(items), np.int64), [w[0] for w in windows],
                                   [w[1] for w in windows], [meta["feature_fps"] for _, meta in items])
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


# ------------------------------------------------------------------------------------------------ outputs

def detections_json(vid: str, segments, scores, labels, classes: list[str]) -> dict:
    """ActivityNet results format (the same layout main.py/test.py write)."""
    rows = [{"segment": [round(float(s), 4), round(float(e), 4)], "label": classes[int(c)], "score": float(p)}
            for (s, e), c, p in zip(segments, labels, scores)]
    return {"results": {vid: rows}, "external_data": {}}


def timeline_lanes(segments: np.ndarray, labels: np.ndarray, max_lanes: int) -> np.ndarray:
    """Lane of each detection inside its class row so that drawn bars never overlap: detections (in row
    order, i.e. best first) take the first lane free at their time span; -1 when all `max_lanes` are taken."""
    lane = np.full(len(labels), -1, dtype=np.int64)
    ends: dict[int, list[list[tuple[float, float]]]] = {}
    for i, ((start, end), c) in enumerate(zip(segments.tolist(), labels.tolist())):
        lanes = ends.setdefault(int(c), [])
        for k, taken in enumerate(lanes):
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                lane[i] = k
                break
        else:
            if len(lanes) < max_lanes:
                lanes.append([(start, end)])
                lane[i] = len(lanes) - 1
    return lane


def plot_timeline(path: Path, vid: str, duration: float, segments, scores, labels, classes: list[str],
                  top: int, max_lanes: int = 4) -> Path:
    """One row per class; inside it overlapping detections are stacked in lanes (the best in the top lane);
    colour = class, opacity = score; the `top` best detections are outlined and labelled with their score."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.io import atomic_write_bytes

    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    lane = timeline_lanes(segments, labels, max_lanes)
    lanes_of = {c: int(lane[labels == c].max()) + 1 if (lane[labels == c] >= 0).any() else 1
                for c in range(len(classes))}
    fig, ax = plt.subplots(figsize=(12, 1.4 + 0.6 * len(classes)))
    peak = float(scores.max()) if len(scores) else 1.0
    for i in np.flatnonzero(lane >= 0)[::-1]:  # best drawn last
        (start, end), c, score = segments[i], int(labels[i]), float(scores[i])
        height = 0.8 / lanes_of[c]
        bottom = c - 0.4 + lane[i] * height
        alpha = 0.2 + 0.8 * (score / peak if peak > 0 else 0.0)
        ax.broken_barh([(start, max(end - start, 1e-3))], (bottom + 0.05 * height, 0.9 * height),
                       facecolors=colours(c % colours.N), alpha=alpha,
                       edgecolor="black" if i < top else "none", linewidth=0.8)
        if i < top:
            ax.text((start + end) / 2, bottom + height / 2, f"#{i + 1} {score:.2f}", ha="center", va="center",
                    fontsize=7)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_ylim(len(classes) - 0.5, -0.5)
    ax.set_xlim(0, max(duration, float(segments[:, 1].max()) if len(segments) else 0.0, 1e-3))
    ax.set_xlabel("time (s)")
    hidden = int((lane < 0).sum())
    note = f", {hidden} more not drawn" if hidden else ""
    ax.set_title(f"{vid}: {len(scores)} detections (opacity = score; best {min(top, len(scores))} numbered{note})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def format_top(segments, scores, labels, classes: list[str], top: int) -> str:
    lines = [f"{'#':>3}  {'start (s)':>9}  {'end (s)':>9}  {'score':>6}  class"]
    for rank in range(min(top, len(scores))):
        (start, end), c = segments[rank], int(labels[rank])
        lines.append(f"{rank + 1:>3}  {start:9.2f}  {end:9.2f}  {scores[rank]:6.4f}  {classes[c]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv, get_parser())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from models.build import build_model, build_postprocessor
    from utils.checkpoint import load_model_weights

    if not cfg.ckpt:
        raise SystemExit("--ckpt is required: the trained detector's weights (e.g. ckpt/Thumos14/best_<model>.pkl)")
    if not Path(cfg.video).is_file():
        raise SystemExit(f"--video {cfg.video}: file not found")
    classes = parse_class_list(cfg.classes)
    if cfg.raw_prompts:
        cfg.target_type = "name"
    device = resolve_device(cfg.device)
    cfg.device = str(device)
    out_dir = Path(cfg.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    vid = video_id(cfg.video)

    # The detector first: a checkpoint that does not fit the flags fails before any video is decoded.
    model = build_model(cfg)
    load_model_weights(model, cfg.ckpt)
    model.to(device)

    descriptions = None
    if cfg.target_type == "description" and not cfg.text_embeddings:
        from datasets.annotations import load_descriptions

        descriptions = load_descriptions(cfg.description_file_path, required=True)
    text_encoder = build_text_encoder(cfg)
    text_embeddings = text_encoder.encode(classes, descriptions)
    # the model compares text with features of width hidden_dim (checked against the video below)
    check_embedding_dim(text_embeddings, cfg.hidden_dim, text_encoder.source)

    features, info = video_features(cfg, out_dir)
    if features.shape[1] != cfg.hidden_dim:
        raise SystemExit(f"features of {cfg.video} have {features.shape[1]} channels but the model's hidden_dim is "
                         f"{cfg.hidden_dim}: use the CLIP model the checkpoint was trained with")

    items = model_items(features, info, cfg)
    detections = detect(model, build_postprocessor(cfg), items, text_embeddings, device, cfg)
    segments, scores, labels = merge_detections(*detections, items, cfg.nms_threshold)

    json_path = atomic_write_json(out_dir / f"{vid}_detections.json",
                                  detections_json(vid, segments, scores, labels, classes))
    duration = max(float(info["frame_duration"]), float(info["snippet_duration"]))
    png_path = plot_timeline(out_dir / f"{vid}_timeline.png", vid, duration, segments, scores, labels, classes,
                             cfg.top)
    print(f"{vid}: {duration:.1f} s, {info['snippet_length']} snippets, {len(items)} model input(s), "
          f"{len(scores)} detections")
    print(format_top(segments, scores, labels, classes, cfg.top))
    print(f"wrote {json_path} and {png_path}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    from utils.checkpoint import CheckpointError
    from utils.video import VideoDecodeError

    return run_cli(main, argv, extra_errors=(CheckpointError, VideoDecodeError))


if __name__ == "__main__":
    sys.exit(cli())

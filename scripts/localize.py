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
Writes into `--out_dir` (`--formats`, default all): `<video>_detections.json` (ActivityNet results format,
times in seconds), `<video>_timeline.png`, `<video>_detections.csv` (every detection) and
`<video>_detections.srt` (subtitles of the `--top` best), and prints the top detections.
The work is done by `utils.engine.detector.Detector`, the Python API: the same detections from a notebook.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.text_encoder import parse_class_list  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.config import get_args_parser, parse_config  # noqa: E402
from utils.engine.detector import Detections, Detector, format_score  # noqa: E402
from utils.io import atomic_write_json, atomic_write_text  # noqa: E402
from utils.video import REDUCTIONS  # noqa: E402

FORMATS = ("json", "png", "csv", "srt")

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
    group.add_argument("--formats", default=",".join(FORMATS),
                       help=f"comma-separated outputs among {', '.join(FORMATS)} (the detections are always printed)")
    return parser


# ------------------------------------------------------------------------------------------------ outputs

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
            ax.text((start + end) / 2, bottom + height / 2, f"#{i + 1} {format_score(score)}", ha="center", va="center",
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
        lines.append(f"{rank + 1:>3}  {start:9.2f}  {end:9.2f}  {format_score(scores[rank]):>6}  {classes[c]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main

def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--formats: unknown output(s) {unknown}; expected some of {list(FORMATS)}")
    return formats


def write_outputs(found: Detections, out_dir: Path, formats: list[str], top: int) -> list[Path]:
    stem = out_dir / found.video
    written = []
    if "json" in formats:
        written.append(atomic_write_json(f"{stem}_detections.json", found.results_json()))
    if "csv" in formats:
        written.append(atomic_write_text(f"{stem}_detections.csv", found.to_csv()))
    if "srt" in formats:
        written.append(atomic_write_text(f"{stem}_detections.srt", found.to_srt(top)))
    if "png" in formats:
        written.append(plot_timeline(Path(f"{stem}_timeline.png"), found.video, found.duration, found.segments,
                                     found.scores, found.labels, found.classes, top))
    return written


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv, get_parser())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not cfg.ckpt:
        raise SystemExit("--ckpt is required: the trained detector's weights (e.g. ckpt/Thumos14/best_<model>.pkl)")
    if not Path(cfg.video).is_file():
        raise SystemExit(f"--video {cfg.video}: file not found")
    classes = parse_class_list(cfg.classes)
    formats = parse_formats(cfg.formats)
    out_dir = Path(cfg.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    # The detector first: a checkpoint that does not fit the flags fails before any video is decoded.
    detector = Detector(cfg, reduce=cfg.reduce, nms_threshold=cfg.nms_threshold, raw_prompts=cfg.raw_prompts,
                        feature_dir=out_dir, extract_batch_size=cfg.extract_batch_size)
    found = detector.localize(cfg.video, classes)
    written = write_outputs(found, out_dir, formats, cfg.top)
    print(f"{found.video}: {found.duration:.1f} s, {found.snippet_length} snippets, {found.num_inputs} model "
          f"input(s), {len(found)} detections")
    print(format_top(found.segments, found.scores, found.labels, found.classes, cfg.top))
    print(f"wrote {', '.join(map(str, written))}" if written else "no files written (--formats)")
    return 0


def cli(argv: list[str] | None = None) -> int:
    from utils.engine.checkpoint import CheckpointError
    from utils.video import VideoDecodeError

    return run_cli(main, argv, extra_errors=(CheckpointError, VideoDecodeError))


if __name__ == "__main__":
    sys.exit(cli())

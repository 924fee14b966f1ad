"""Everything the offline path through training and localize.py needs, without internet or real CLIP weights.

    .venv/bin/python scripts/make_offline_demo.py          # writes ./data/OfflineDemo (seconds)
    .venv/bin/python main.py --cfg_path config/offline_demo.yaml --model_name offline_demo
    .venv/bin/python scripts/localize.py --video data/OfflineDemo/demo_video.mp4 --classes "Archery, Fencing" \
        --cfg_path logs/Synthetic/offline_demo_config.yaml --ckpt ckpt/Synthetic/best_offline_demo.pkl

Writes under `--root` (default ./data/OfflineDemo, the folder config/offline_demo.yaml reads):
- `tiny_clip.pt`: a randomly initialised one-layer CLIP (32-d embeddings) saved like a real checkpoint, so it
  goes through the same loader as ViT-B/16 (models/tiny_clip.py);
- `Synthetic/`: a small synthetic zero-shot dataset (datasets/synthetic.py) whose class embeddings come from
  that CLIP's text tower and whose features live in its 32-d embedding space;
- `demo_video.mp4`: a 16 s generated video (flat colours and a moving bar) for localize.py.

The tiny CLIP is random: the detections this path prints are not meaningful. It shows every step (CLIP text
and image towers, training, the saved configuration, feature extraction, detection, the JSON/PNG/CSV/SRT
outputs) working offline; with real weights (`--CLIP_model_name /path/ViT-B-16.pt`) the same commands apply.
Files already there are kept, so running it again changes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import read_synthetic_meta  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.engine.synthetic import ensure_synthetic_dataset  # noqa: E402

DEFAULT_ROOT = "./data/OfflineDemo"
# A small dataset: the offline demo trains in seconds (config/offline_demo.yaml).
DATASET_SIZES = dict(num_classes=8, num_train_videos=16, num_test_videos=12, min_length=120, max_length=260)
VIDEO_FRAMES, VIDEO_FPS = 400, 25  # 16 s, 50 snippets of 8 frames


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"output folder (default {DEFAULT_ROOT}, the one "
                        "config/offline_demo.yaml points at)")
    return parser


def make_offline_demo(root: str | Path) -> dict[str, Path]:
    """Write the tiny CLIP checkpoint, the dataset and the video under `root` (kept when present)."""
    from models.tiny_clip import write_synthetic_video, write_tiny_clip_checkpoint

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    clip_file = root / "tiny_clip.pt"
    if not clip_file.is_file():  # rewriting it would change its identity (and every cache key built on it)
        write_tiny_clip_checkpoint(clip_file.with_suffix(".tmp"), seed=0).replace(clip_file)
    dataset = ensure_synthetic_dataset(root / "Synthetic", seed=0, clip_model_name=str(clip_file), **DATASET_SIZES)
    video = root / "demo_video.mp4"
    if not video.is_file():
        tmp = write_synthetic_video(root / "demo_video.tmp.mp4", VIDEO_FRAMES, fps=VIDEO_FPS, seed=0)
        tmp.replace(video)
    return {"clip": clip_file, "dataset": dataset, "video": video}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    files = make_offline_demo(args.root)
    meta = read_synthetic_meta(files["dataset"])
    print(f"tiny CLIP checkpoint: {files['clip']}\n"
          f"dataset: {files['dataset']} ({meta['num_videos']} videos, {len(meta['classes'])} classes, "
          f"{meta['feature_dim']}-d features from the tiny CLIP)\nvideo: {files['video']}")
    if Path(args.root) == Path(DEFAULT_ROOT):
        print("next:\n  .venv/bin/python main.py --cfg_path config/offline_demo.yaml --model_name offline_demo\n"
              f"  .venv/bin/python scripts/localize.py --video {files['video']} --classes \"Archery, Fencing\" "
              "--cfg_path logs/Synthetic/offline_demo_config.yaml --ckpt ckpt/Synthetic/best_offline_demo.pkl")
    return 0


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv, extra_errors=(FileExistsError,))


if __name__ == "__main__":
    sys.exit(cli())

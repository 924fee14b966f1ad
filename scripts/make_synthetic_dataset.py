"""Write the embedded synthetic zero-shot dataset (release layout) so that everything runs without downloads.

    python scripts/make_synthetic_dataset.py                       # ./data/Synthetic, seed 0, default sizes
    python scripts/make_synthetic_dataset.py --root /tmp/syn --seed 3 --num_train_videos 200 --force
    python scripts/make_synthetic_dataset.py --clip_model_name ViT-B/16   # class embeddings from real CLIP (D=512)

Then train on it with `python main.py --cfg_path config/demo.yaml` (config/demo.yaml points at ./data/Synthetic).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import DEFAULT_ROOT, SyntheticConfig, read_synthetic_meta  # noqa: E402
from utils.engine.synthetic import ensure_synthetic_dataset  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"output folder (default {DEFAULT_ROOT})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="generator seed")
    parser.add_argument("--num_classes", type=int, default=defaults.num_classes, help="classes (4..22)")
    parser.add_argument("--num_train_videos", type=int, default=defaults.num_train_videos,
                        help="videos of subset 'val' (training)")
    parser.add_argument("--num_test_videos", type=int, default=defaults.num_test_videos,
                        help="videos of subset 'test' (inference)")
    parser.add_argument("--min_length", type=int, default=defaults.min_length, help="shortest video (snippets)")
    parser.add_argument("--max_length", type=int, default=defaults.max_length, help="longest video (snippets)")
    parser.add_argument("--feature_dim", type=int, default=defaults.feature_dim,
                        help="feature width (the model's hidden_dim); ignored with --clip_model_name")
    parser.add_argument("--clip_model_name", "--clip_checkpoint", dest="clip_model_name", default=None,
                        help="CLIP model name or checkpoint file: class embeddings from its text tower "
                             "(features then have CLIP's width, 512 for ViT-B/16) instead of a seeded stand-in")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset made with other parameters")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    sizes = {key: getattr(args, key) for key in ("num_classes", "num_train_videos", "num_test_videos", "min_length",
                                                 "max_length", "feature_dim", "clip_model_name")}
    try:
        root = ensure_synthetic_dataset(args.root, seed=args.seed, force=args.force, **sizes)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = read_synthetic_meta(root)
    print(f"synthetic dataset in {root}: {meta['num_videos']} videos, {len(meta['classes'])} classes, "
          f"feature_dim {meta['feature_dim']} (seed {meta['seed']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

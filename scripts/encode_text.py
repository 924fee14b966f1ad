"""Write class text embeddings to an NPZ usable with `--text_embeddings` (no CLIP needed afterwards).

    python scripts/encode_text.py --classes "high jump, pole vault" --out my_classes.npz
    python scripts/encode_text.py --class_file splits/train_75_test_25/THUMOS14/test/split_0.list \
        --CLIP_model_name ViT-B/16 --target_type prompt --out thumos_test_split0.npz
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.annotations import load_descriptions  # noqa: E402
from models.text_encoder import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    TARGET_TYPES,
    ClipTextEncoder,
    build_prompts,
    parse_class_list,
    write_text_embeddings,
)
from utils.cli import run_cli  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--classes", help='comma-separated class names, e.g. "high jump, pole vault"')
    group.add_argument("--class_file", help="text file with one class name a line (e.g. a split list)")
    parser.add_argument("--out", required=True, help="output .npz (class_names, embeddings, logit_scale, prompts)")
    parser.add_argument("--CLIP_model_name", default="ViT-B/16", help="CLIP model name or checkpoint path")
    parser.add_argument("--target_type", default="prompt", choices=TARGET_TYPES, help="text for each class")
    parser.add_argument("--description_file_path", default=None, help="description JSON (target_type description)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--text_cache_dir", default=DEFAULT_CACHE_DIR, help="embedding cache ('' = off)")
    parser.add_argument("--clip_download_root", default=None,
                        help="where CLIP model names are downloaded (default: ~/.cache/clip)")
    return parser


def read_class_file(path: str) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    names = [line for line in lines if line]
    if not names:
        raise ValueError(f"--class_file {path} names no class")
    return names


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = parse_class_list(args.classes) if args.classes else read_class_file(args.class_file)
    descriptions = None
    if args.target_type == "description":
        if not args.description_file_path:
            raise SystemExit("--target_type description needs --description_file_path")
        descriptions = load_descriptions(args.description_file_path, required=True)
    encoder = ClipTextEncoder(args.CLIP_model_name, args.target_type, args.device, args.text_cache_dir,
                              args.description_file_path, args.clip_download_root)
    embeddings = encoder.encode(names, descriptions)
    prompts = build_prompts(names, args.target_type, descriptions, args.description_file_path)
    write_text_embeddings(args.out, names, embeddings, encoder.logit_scale, prompts)
    print(f"wrote {len(names)} x {embeddings.shape[1]} embeddings ({encoder.source}, {args.target_type}) "
          f"to {args.out}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())

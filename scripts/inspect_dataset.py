"""Dump the items (windows / videos and their targets) a configuration produces, as JSON; optionally compare.

    python scripts/inspect_dataset.py --cfg_path config/Thumos14_CLIP_zs_75_8frame.yaml --mode train --out items.json
    python scripts/inspect_dataset.py --cfg_path config/Thumos14_CLIP_zs_75_8frame.yaml \
        --out items.json --compare ../shared/fixtures/reference/dataset_thumos14_split75_0.json

Every flag of main.py is accepted (e.g. --split 50 --split_id 3 --slice_overlap 0.5). The output layout is that
of the reference fixtures: `modes.<mode>.{classes, num_items, num_instances, num_source_videos, item_names,
items, eval_ground_truth}`; each item has video name, source video and window indices, time offset, feature
length and duration, window-relative annotations and the target (salient masks as [start, end) ranges).
No feature file is read. `.gz` output paths are gzip-compressed. With --compare the exit status is 1 when the
dump differs from the reference (floats to --atol).
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import build_dataset  # noqa: E402
from scripts.item_dump import compare_dumps, dump_mode, read_dump  # noqa: E402
from utils.config import ConfigError, config_to_dict, get_args_parser, parse_config  # noqa: E402
from utils.io import atomic_write_bytes, atomic_write_text  # noqa: E402


def get_parser():
    parser = get_args_parser("Dump the dataset items of a configuration")
    group = parser.add_argument_group("inspect_dataset")
    group.add_argument("--mode", choices=("train", "inference", "both"), default="both", help="which mode(s) to dump")
    group.add_argument("--out", required=True, help="output JSON (.json or .json.gz)")
    group.add_argument("--compare", default=None, help="reference dump (e.g. a fixture) to compare with")
    group.add_argument("--atol", type=float, default=1e-6, help="float tolerance of --compare")
    return parser


def inspect(cfg, modes: list[str]) -> dict:
    out = {"meta": {"kind": "gap-zstal-dataset-dump", "dataset_name": cfg.dataset_name},
           "flags": config_to_dict(cfg), "modes": {}}
    for mode in modes:
        dataset = build_dataset(cfg, mode, check_features=False)
        overlap = None
        if dataset.family.windowed:
            overlap = cfg.slice_overlap if mode == "train" else cfg.inference_slice_overlap
        out["modes"][mode] = dump_mode(dataset, slice_overlap=overlap)
        print(f"{mode}: {len(dataset)} items, {out['modes'][mode]['num_instances']} instances, "
              f"{len(dataset.ground_truth)} ground-truth videos, {len(dataset.video_ids)} evaluated videos")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    try:
        cfg = parse_config(argv, parser)
        modes = ["train", "inference"] if cfg.mode == "both" else [cfg.mode]
        out = inspect(cfg, modes)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = Path(cfg.out)
    text = json.dumps(out)
    if path.suffix == ".gz":
        atomic_write_bytes(path, gzip.compress(text.encode("utf-8")))
    else:
        atomic_write_text(path, text)
    print(f"wrote {path}")
    if cfg.compare:
        reference = read_dump(cfg.compare)
        reference["modes"] = {m: v for m, v in reference.get("modes", {}).items() if m in modes}
        diffs = compare_dumps(out, reference, atol=cfg.atol)
        if diffs:
            print(f"{len(diffs)}{'+' if len(diffs) >= 50 else ''} differences from {cfg.compare}:")
            print("\n".join(f"  {d}" for d in diffs))
            return 1
        print(f"identical to {cfg.compare} (modes {', '.join(modes)}; floats to {cfg.atol})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

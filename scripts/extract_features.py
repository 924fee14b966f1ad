"""Extract CLIP image features per snippet from videos, in the layout of the release's feature folders.

    python scripts/extract_features.py --videos /data/thumos14/videos --out_dir features/thumos14_8frame \
        --info_out features/thumos14_8frame/Thumos14_info_8frame.json --frames_per_snippet 8

For every video `<id>.<ext>` it writes `<out_dir>/<id>.npy` (float32 `[snippet_length, D]`, D = 512 for
ViT-B/16) and an entry `<id>: {frame_length, snippet_length, video_fps, frame_duration, snippet_duration}`
in the info JSON, computed as in the release (utils/video.py). Point `feature_path` / `feature_info_path`
of a config at them. Videos are decoded with PyAV (FFmpeg); every frame is decoded, snippet i covers frames
[i*k, (i+1)*k) for k = --frames_per_snippet (THUMOS14 release: 8, ActivityNet: 16); leftover frames are
dropped. How the authors pooled the frames of a snippet is not recorded: `--reduce mean` (default) averages
the CLIP features of all k frames, `--reduce center` encodes only frame i*k + k//2 (k times faster).

Frames get CLIP's own preprocessing (shorter side resized to the model's resolution, bicubic, centre crop,
normalisation), done in batches on the device; on CUDA CLIP runs in float16 as openai-clip does. Several
videos are decoded in parallel threads (`--workers`, default 4 with CUDA): decoding and RGB conversion, not
the GPU, limit the speed. Finished videos (feature file and info entry present) are skipped, so an
interrupted run can simply be restarted; a video that fails is reported at the end and the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from models.clip_loading import clip_dtype_tag  # noqa: E402
from models.frame_encoder import ClipFrameEncoder, extract_video_features, save_features  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.io import atomic_write_json  # noqa: E402
from utils.video import REDUCTIONS, list_videos, video_id  # noqa: E402

logger = logging.getLogger("extract_features")
SETTINGS_FILE = "extraction_settings.json"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True,
                        help="a folder of videos, a text file listing video paths (one a line), or one video")
    parser.add_argument("--out_dir", required=True, help="folder for <video_id>.npy feature files")
    parser.add_argument("--info_out", default=None,
                        help="feature-info JSON to create or merge into (default: <out_dir>/feature_info.json)")
    parser.add_argument("--CLIP_model_name", default="ViT-B/16", help="CLIP model name or checkpoint path")
    parser.add_argument("--frames_per_snippet", type=int, default=8,
                        help="frames per snippet = the config's feature_stride (THUMOS14: 8, ActivityNet: 16)")
    parser.add_argument("--reduce", default="mean", choices=REDUCTIONS,
                        help="mean: average the CLIP features of all frames of a snippet; center: use the "
                             "frame i*k + k//2 only")
    parser.add_argument("--batch_size", type=int, default=64, help="frames per CLIP forward pass")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--workers", type=int, default=0,
                        help="videos decoded in parallel (default: 4 with CUDA, 1 on CPU)")
    parser.add_argument("--overwrite", action="store_true", help="re-extract videos that are already done")
    parser.add_argument("--flush_every", type=int, default=20,
                        help="write the info JSON after this many extracted videos (and at the end)")
    parser.add_argument("--clip_download_root", default=None, help="where CLIP model names are downloaded "
                        "(default: ~/.cache/clip)")
    return parser


SETTING_KEYS = ("CLIP_model_name", "frames_per_snippet", "reduce")  # known before CLIP is loaded


def check_settings(out_dir: Path, settings: dict, overwrite: bool, video_ids: list[str]) -> None:
    """Refuse to mix features of different CLIP models / snippet settings in one folder.

    The settings recorded with the features (`extraction_settings.json`) are compared before anything is
    skipped, so a re-run with another `--reduce` or model never reports stale features as "already
    extracted". `--overwrite` re-extracts the given videos with the new settings, provided the folder holds no
    other video's features (those would stay extracted the old way).
    """
    path = out_dir / SETTINGS_FILE
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} is not valid JSON ({err}); delete it or choose another --out_dir") from err
    changed = {k: (previous.get(k), settings[k]) for k in SETTING_KEYS if previous.get(k) != settings[k]}
    if not changed:
        return
    what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
    if not overwrite:
        raise SystemExit(f"{out_dir} holds features extracted with other settings ({what}); pass --overwrite to "
                         "re-extract them, or choose another --out_dir")
    others = sorted(p.stem for p in out_dir.glob("*.npy") if p.stem not in set(video_ids))
    if others:
        raise SystemExit(f"{out_dir} holds features of {len(others)} other video(s) extracted with other settings "
                         f"({what}), e.g. {others[:3]}; --overwrite re-extracts only the given videos: choose "
                         "another --out_dir")


def _read_info(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"--info_out {path} exists but is not valid JSON ({err})") from err
    if not isinstance(info, dict):
        raise SystemExit(f"--info_out {path} must hold a JSON object (video id -> entry)")
    return info


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames_per_snippet < 1 or args.batch_size < 1:
        raise SystemExit("--frames_per_snippet and --batch_size must be >= 1")
    videos = list_videos(args.videos)
    ids = [video_id(v) for v in videos]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"several videos share the id(s) {duplicates[:10]} (file name without extension)")
    out_dir = Path(args.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    info_path = Path(args.info_out).expanduser() if args.info_out else out_dir / "feature_info.json"
    info = _read_info(info_path)

    check_settings(out_dir, {"CLIP_model_name": args.CLIP_model_name, "frames_per_snippet": args.frames_per_snippet,
                             "reduce": args.reduce}, args.overwrite, ids)

    todo = [(v, i) for v, i in zip(videos, ids)
            if args.overwrite or not ((out_dir / f"{i}.npy").is_file() and i in info)]
    skipped = len(videos) - len(todo)
    print(f"{len(videos)} videos: {skipped} already extracted, {len(todo)} to do -> {out_dir}")
    if not todo:
        return 0

    encoder = ClipFrameEncoder(args.CLIP_model_name, args.device, args.clip_download_root)
    import av

    atomic_write_json(out_dir / SETTINGS_FILE, {
        "CLIP_model_name": args.CLIP_model_name, "frames_per_snippet": args.frames_per_snippet,
        "reduce": args.reduce, "input_resolution": encoder.n_px, "feature_dim": encoder.dim,
        "precision": clip_dtype_tag(encoder.device), "decoder": f"PyAV {av.__version__}",
    }, indent=2)

    workers = args.workers if args.workers > 0 else (4 if encoder.device.type == "cuda" else 1)

    def process(path: Path, vid: str) -> dict:
        features, entry = extract_video_features(path, encoder, args.frames_per_snippet, args.reduce,
                                                 args.batch_size, show_progress=workers == 1)
        save_features(out_dir / f"{vid}.npy", features)
        return entry

    failures: list[tuple[Path, str]] = []
    done_since_flush, started = 0, time.time()
    bar = tqdm(total=len(todo), desc="videos", unit="video")
    # Videos are decoded in parallel threads (FFmpeg releases the GIL); the GPU work is serialised.
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(process, path, vid): (path, vid) for path, vid in todo}
        for future in as_completed(futures):
            path, vid = futures[future]
            bar.update(1)
            try:
                info[vid] = future.result()
            except Exception as err:  # noqa: BLE001 - one bad video must not end the run
                failures.append((path, f"{type(err).__name__}: {err}"))
                bar.set_postfix(failed=len(failures))
                continue
            done_since_flush += 1
            if done_since_flush >= args.flush_every:
                atomic_write_json(info_path, info)
                done_since_flush = 0
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        atomic_write_json(info_path, info)

    extracted = len(todo) - len(failures)
    print(f"extracted {extracted} videos in {time.time() - started:.1f} s, skipped {skipped}, "
          f"failed {len(failures)}; info: {info_path}")
    for path, reason in sorted(failures):
        print(f"  FAILED {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())

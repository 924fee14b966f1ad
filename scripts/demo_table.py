"""Print a finished training run as a row of README's demo table, so the table's numbers come from files.

    .venv/bin/python main.py --cfg_path config/demo.yaml --model_name demo
    .venv/bin/python scripts/demo_table.py --model_name demo --label "default"

Reads what the run wrote under `--output_root` (default .): `results/<dataset>/<model>/best_metrics.json`
(selected epoch, average mAP, mAP@0.5 and AR@40 with eval_videos=gt, average mAP with eval_videos=all),
`results/excel/<dataset>/<model>_results.csv` (average mAP of the last epoch) and `logs/<dataset>/<model>.log`
(wall time: from the last "command configuration" line to the last timestamped line). Prints the table
header, the row, the last epoch's average mAP, and the machine (CPU model, its widest vector instructions
as torch sees them, torch version, threads): another CPU gives other, still deterministic, numbers.
tests/test_demo_table.py checks that README's table has exactly these columns and this format.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cpu import cpu_model, torch_cpu_capability  # noqa: E402

HEADER = ("| run | wall time | selected epoch | avg mAP (eval_videos=gt) | mAP@0.5 | AR@40 | "
          "avg mAP (eval_videos=all) |")
SEPARATOR = "| --- | --- | --- | --- | --- | --- | --- |"
# a row as README shows it; wall time "1 min 48 s" or "54 s"
ROW_PATTERN = re.compile(r"^\| (?P<label>[^|]+?) \| (?P<wall>(\d+ min )?\d+ s) \| (?P<epoch>\d+) \| "
                         r"(?P<avg>\d+\.\d\d) \| (?P<ap50>\d+\.\d\d) \| (?P<ar40>\d+\.\d\d) \| (?P<all>\d+\.\d\d) \|$")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is the run finished (and --model_name/--dataset right)?")
    return json.loads(path.read_text())


def wall_time(log_path: Path) -> float:
    """Seconds from the start of the last run logged in `log_path` to its last timestamped line."""
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path} not found")
    start = end = None
    for line in log_path.read_text().splitlines():
        match = _STAMP.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            if "command configuration" in line:
                start = stamp
            end = stamp
    if start is None or end is None:
        raise ValueError(f"{log_path}: no 'command configuration' line: not a main.py log")
    return (end - start).total_seconds()


def format_wall(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def last_epoch_map(csv_path: Path, num_tious: int) -> tuple[int, float]:
    """(epoch, average mAP ×100) of the latest epoch in the results CSV (epoch, AP per tIoU, average mAP, ...)."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found")
    rows = [row for row in csv.reader(csv_path.read_text().splitlines()) if row]
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    last = max(rows, key=lambda row: int(row[0]))
    return int(last[0]), float(last[1 + num_tious])


def table_row(label: str, output_root: Path, dataset: str, model: str) -> dict:
    """The row and the numbers it is made of."""
    best = _read_json(output_root / "results" / dataset / model / "best_metrics.json")
    other = best.get("eval_videos_all")
    if best.get("eval_videos") != "gt" or other is None:
        raise ValueError(f"best_metrics.json of {model} must hold eval_videos=gt metrics with eval_videos_all beside "
                         f"them (the default --eval_videos gt), got eval_videos={best.get('eval_videos')!r}")
    seconds = wall_time(output_root / "logs" / dataset / f"{model}.log")
    epoch, final = last_epoch_map(output_root / "results" / "excel" / dataset / f"{model}_results.csv",
                                  len(best["iou_range"]))
    values = {"wall": format_wall(seconds), "epoch": int(best["epoch"]), "avg": 100 * best["average_mAP"],
              "ap50": 100 * best["AP50"], "ar40": 100 * best["AR@40"], "all": 100 * other["average_mAP"]}
    row = (f"| {label} | {values['wall']} | {values['epoch']} | {values['avg']:.2f} | {values['ap50']:.2f} | "
           f"{values['ar40']:.2f} | {values['all']:.2f} |")
    return {"row": row, "last_epoch": epoch, "last_epoch_avg_mAP": final, **values}


def machine() -> str:
    """CPU model, torch's CPU capability, torch version, threads."""
    return (f"CPU {cpu_model()} ({torch_cpu_capability()} kernels), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", required=True, help="the run's --model_name")
    parser.add_argument("--dataset", default="Synthetic", help="the run's dataset_name (default Synthetic)")
    parser.add_argument("--output_root", default=".", help="the run's --output_root")
    parser.add_argument("--label", default=None, help="text of the first column (default: the model name)")
    args = parser.parse_args(argv)
    result = table_row(args.label or args.model_name, Path(args.output_root), args.dataset, args.model_name)
    print(HEADER)
    print(SEPARATOR)
    print(result["row"])
    print(f"last epoch ({result['last_epoch']}, counted from 0 as in the log): average mAP "
          f"{result['last_epoch_avg_mAP']:.2f}")
    print(f"measured on: {machine()}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    from utils.cli import run_cli

    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())

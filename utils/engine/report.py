"""Reporting metrics: console/log tables, the per-epoch CSV, TensorBoard scalars and result files."""
from __future__ import annotations

from pathlib import Path

from utils.io import atomic_write_json, atomic_write_text
from utils.scoring.metrics import AR_AT

AR_KEYS = tuple(f"AR@{k}" for k in AR_AT)
SUMMARY_AR_KEYS = ("AR@10", "AR@25", "AR@40")


def metric_columns(metrics: dict, ar_keys=SUMMARY_AR_KEYS) -> tuple[list[str], list[float]]:
    """Column names and values (in %) of the result tables: per-tIoU mAP, average mAP, then `ar_keys`."""
    header = [f"mAP@{t:.2f}" for t in metrics["iou_range"]] + ["avg mAP"] + list(ar_keys)
    values = [100 * v for v in metrics["mAP_per_tiou"]] + [100 * metrics["average_mAP"]]
    values += [100 * metrics[key] for key in ar_keys]
    return header, values


def metrics_table(metrics: dict, title: str = "", ar_keys=SUMMARY_AR_KEYS) -> str:
    """Per-tIoU mAP, average mAP, AR@AN (in %), as an aligned text table."""
    header, values = metric_columns(metrics, ar_keys)
    widths = [max(len(h), 7) for h in header]
    lines = [title] if title else []
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines.append("  ".join(f"{v:.2f}".rjust(w) for v, w in zip(values, widths)))
    return "\n".join(lines)


PROTOCOL_LABELS = {
    "gt": "eval_videos=gt (the original's protocol: detections on videos without ground truth are dropped)",
    "all": "eval_videos=all (detections on videos without ground truth count as false positives)",
}


def other_protocol(eval_videos: str) -> str:
    """The `--eval_videos` protocol reported beside the chosen one."""
    return "all" if eval_videos == "gt" else "gt"


def summary_block(selected: dict, other: dict | None, selection: str, epoch: int, eval_videos: str = "gt") -> str:
    """The final summary: the selected epoch, how it was chosen, and the other evaluation protocol beside it."""
    parts = [metrics_table(selected, f"Selected epoch {epoch} ({selection}); {PROTOCOL_LABELS[eval_videos]}")]
    if other is not None:
        parts.append(metrics_table(other, f"Same epoch, {PROTOCOL_LABELS[other_protocol(eval_videos)]}"))
    return "\n".join(parts)


def csv_row(epoch: int, metrics: dict) -> str:
    """The original's CSV row: epoch, AP per tIoU, mAP, AR@1..AR@100, AUC (all x100, 6 decimals)."""
    values = metric_columns(metrics, AR_KEYS)[1] + [100 * metrics["AUC"]]
    return ",".join([str(epoch)] + [f"{v:.6f}" for v in values])


def append_csv_row(path: Path, epoch: int, metrics: dict) -> None:
    """Append atomically (rewrite the whole small file) so a kill never leaves a torn line."""
    path = Path(path)
    previous = path.read_text() if path.exists() else ""
    atomic_write_text(path, previous + csv_row(epoch, metrics) + "\n")


def check_csv_rows(path: Path) -> None:
    """A results CSV must hold only the rows main.py writes (no header line): an epoch number first."""
    path = Path(path)
    if not path.is_file():
        return
    for number, row in enumerate(path.read_text().splitlines(), start=1):
        if row.strip() and not row.split(",", 1)[0].strip().lstrip("-").isdigit():
            raise ValueError(f"results CSV {path} line {number} ({row[:40]!r}...) does not start with an epoch "
                             "number; the file must hold main.py's rows only, without a header line")


def truncate_csv(path: Path, last_epoch: int) -> int:
    """Drop rows of epochs after `last_epoch` (on resume: evaluations a kill cut off before the state was
    saved, which the resumed run repeats). Returns the number of rows dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    check_csv_rows(path)
    rows = path.read_text().splitlines()
    kept = [row for row in rows if row.strip() and int(row.split(",", 1)[0]) <= last_epoch]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(row + "\n" for row in kept))
    return len(rows) - len(kept)


def write_metrics_json(path: Path, metrics: dict, **extra) -> Path:
    return atomic_write_json(path, {**metrics, **extra}, indent=2)


def log_scalars(writer, prefix: str, metrics: dict, step: int) -> None:
    if writer is None:
        return
    for tiou, value in zip(metrics["iou_range"], metrics["mAP_per_tiou"]):
        writer.add_scalar(f"{prefix}/mAP@{tiou:.2f}", 100 * value, step)
    writer.add_scalar(f"{prefix}/average_mAP", 100 * metrics["average_mAP"], step)
    for key in AR_KEYS + ("AUC",):
        writer.add_scalar(f"{prefix}/{key}", 100 * metrics[key], step)

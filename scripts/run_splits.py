"""The whole zero-shot protocol in one command: train and test every class split, then one results table.

    python scripts/run_splits.py --cfg_path config/Thumos14_CLIP_zs_75_8frame.yaml --model_name GAP_T75 \
        --split_ids 0-9 --jobs 1 [any other main.py flag]

For each split id it runs `main.py` (training, with `--select_on` choosing the epoch) and then `test.py`
on the selected checkpoint, as separate processes, each named `<model_name>_split<id>`. A finished split
leaves `results/<dataset>/<model_name>_split<id>/split_finished.json` (its configuration and test metrics;
only this script writes it) and is reused when its configuration equals the requested one; otherwise the
command stops before running anything and names the differing flags. An interrupted protocol resumes by
running the same command: a split whose training was interrupted continues from its last saved epoch
(`main.py --resume ckpt/<dataset>/state_<model_name>_split<id>.pt`). Progress (split, epoch) is printed
as the runs go; each run's full output is in `results/<dataset>/<model_name>_splits/logs/`. The table
(Markdown + CSV, one row per split, then mean and standard deviation) and a plot of per-split average mAP
go to `results/<dataset>/<model_name>_splits/`.

On a Slurm cluster, `--launcher slurm` submits each unfinished split (its train + test) as one job through
submitit (`--slurm_partition`, `--slurm_gpus`, `--slurm_time`, `--slurm_account`, `--slurm_extra key=value
...` for any other submitit Slurm parameter) and waits for them; with `--detach` it submits and returns.
The job ids go to `results/<dataset>/<model_name>_splits/jobs.json`, so the same command run later waits
for (or re-submits, when a job ended without finishing its split) the recorded jobs and writes the table.
Jobs run from the directory of the command (the repository root), with submitit's logs in `.../slurm/`.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.cli import run_cli  # noqa: E402
from utils.config import (  # noqa: E402
    RESUME_MAY_DIFFER,
    ConfigError,
    config_differences,
    config_to_dict,
    get_args_parser,
    parse_config,
)
from utils.engine.checkpoint import load_training_state  # noqa: E402
from utils.engine.paths import RunPaths  # noqa: E402
from utils.engine.report import metric_columns  # noqa: E402
from utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402


def parse_split_ids(text: str) -> list[int]:
    """'0-9' -> [0..9]; '0,2,5-6' -> [0, 2, 5, 6]; ids must be 0..9 and are returned sorted, unique."""
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if low > high:
                    raise ValueError
                ids.update(range(low, high + 1))
            else:
                ids.add(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--split_ids: cannot read {part!r}; expected e.g. 0-9 or 0,3,5-7") from None
    if not ids or min(ids) < 0 or max(ids) > 9:
        raise argparse.ArgumentTypeError(f"--split_ids {text!r}: the standard splits are numbered 0..9")
    return sorted(ids)


def split_model_name(model_name: str, split_id: int) -> str:
    return f"{model_name}_split{split_id}"


def split_paths(output_root: str, dataset: str, model_name: str, split_id: int) -> RunPaths:
    return RunPaths(Path(output_root), dataset, split_model_name(model_name, split_id))


# Flags that do not change a split's result (where/how it runs): ignored when reusing a finished split.
REUSE_IGNORES = (*RESUME_MAY_DIFFER, "output_root", "text_cache_dir", "clip_download_root", "save_result")
EPOCH_LINE = re.compile(r" epoch (\d+) train losses")


def split_config(passthrough: list[str], model_name: str, split_id: int):
    """The configuration main.py and test.py get for one split."""
    return parse_config(passthrough + ["--split_id", str(split_id), "--model_name",
                                       split_model_name(model_name, split_id)])


def finished_metrics(split_id: int, paths: RunPaths, requested) -> dict | None:
    """Test metrics of a split finished earlier with the requested configuration; None when not finished;
    an error naming the differing flags when it was finished with other flags."""
    if not paths.split_done.is_file():
        return None
    saved = json.loads(paths.split_done.read_text())
    differing = config_differences(saved["config"], requested, ignore=REUSE_IGNORES)
    if differing:
        changes = ", ".join(f"--{key} {old!r} -> {new!r}" for key, (old, new) in differing.items())
        raise ConfigError(f"split {split_id} was finished with other flags ({paths.split_done}; saved -> now: "
                          f"{changes}); use another --model_name, or move its outputs away to run it again")
    return saved["metrics"]


def _run_logged(command: list[str], log_path: Path, split_id: int, epochs: int) -> int:
    """Run `command`, its output into `log_path` (appended), printing one progress line per finished epoch."""
    with open(log_path, "a") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   cwd=Path.cwd(), bufsize=1)
        for line in process.stdout:
            log.write(line)
            match = EPOCH_LINE.search(line)
            if match:
                print(f"split {split_id}: epoch {int(match.group(1)) + 1}/{epochs} trained", flush=True)
        return process.wait()


def run_one_split(split_id: int, passthrough: list[str], model_name: str, paths: RunPaths, log_dir: Path,
                  requested) -> dict:
    """Train then test one split in subprocesses; returns its test metrics and marks it finished.

    When the split's state file exists, training resumes from it (an interrupted protocol loses at most one
    epoch per split), or is skipped when that state is already at the last epoch.
    """
    done = finished_metrics(split_id, paths, requested)
    if done is not None:
        print(f"split {split_id}: finished earlier ({paths.split_done}), reused")
        return done
    name = split_model_name(model_name, split_id)
    common = passthrough + ["--split_id", str(split_id), "--model_name", name]
    log_dir.mkdir(parents=True, exist_ok=True)
    for script in ("main.py", "test.py"):
        extra = []
        if script == "main.py":
            if paths.state.is_file():
                state = load_training_state(paths.state)
                if state["epoch"] + 1 >= requested.epochs:
                    differing = config_differences(state.get("config", {}), requested, ignore=REUSE_IGNORES)
                    if differing:
                        raise ConfigError(f"split {split_id}: {paths.state} was trained with other flags: "
                                          + ", ".join(f"--{k} {a!r} -> {b!r}" for k, (a, b) in differing.items()))
                    print(f"split {split_id}: training finished earlier ({paths.state})")
                    continue
                extra = ["--resume", str(paths.state)]
                print(f"split {split_id}: resuming training from {paths.state}")
            elif paths.existing_outputs():
                extra = ["--overwrite"]  # an attempt killed before its first epoch was saved: nothing to keep
        log_path = log_dir / f"{name}_{script.replace('.py', '')}.out"
        print(f"split {split_id}: running {script} (output in {log_path})", flush=True)
        status = _run_logged([sys.executable, str(REPO_ROOT / script)] + common + extra, log_path, split_id,
                             requested.epochs)
        if status != 0:
            raise RuntimeError(f"split {split_id}: {script} failed with exit code {status}; see {log_path}")
    if not paths.test_metrics.is_file():
        raise RuntimeError(f"split {split_id}: test.py finished but wrote no {paths.test_metrics}")
    metrics = json.loads(paths.test_metrics.read_text())
    atomic_write_json(paths.split_done, {"config": config_to_dict(requested), "metrics": metrics}, indent=2)
    print(f"split {split_id}: finished, average mAP {100 * metrics['average_mAP']:.2f}", flush=True)
    return metrics


def slurm_time_minutes(text: str) -> int:
    """--slurm_time: minutes ('90') or Slurm's [D-]HH:MM[:SS] ('72:00:00', '1-12:00:00') -> minutes."""
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(x) for x in clock.split(":")]
        if not 1 <= len(parts) <= 3 or min(parts) < 0:
            raise ValueError
        if len(parts) == 1 and not days:
            minutes = parts[0]
        else:
            hours, mins, secs = (parts + [0, 0])[:3]
            minutes = (int(days or 0) * 24 + hours) * 60 + mins + (secs > 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--slurm_time {text!r}: expected minutes or [D-]HH:MM[:SS]") from None
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"--slurm_time {text!r}: at least one minute")
    return minutes


def slurm_parameters(args) -> dict:
    """submitit SlurmExecutor parameters from the --slurm_* flags; an unknown --slurm_extra key is an error."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install submitit (requirements.txt)") from None

    params = {"job_name": "gap_split", "time": args.slurm_time, "nodes": 1, "ntasks_per_node": 1}
    for key, value in (("partition", args.slurm_partition), ("gpus_per_node", args.slurm_gpus),
                       ("account", args.slurm_account)):
        if value is not None:
            params[key] = value
    valid = submitit.SlurmExecutor._valid_parameters()
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm_extra {item!r}: expected key=value (e.g. qos=high mem=64G cpus_per_task=8)")
        if key not in valid:
            raise ConfigError(f"--slurm_extra {item!r}: {key!r} is not a submitit Slurm parameter; valid: "
                              + ", ".join(sorted(valid)))
        params[key] = int(value) if value.isdigit() else value
    return params


def make_slurm_executor(folder: Path, params: dict):
    """The submitit executor of --launcher slurm (tests swap in submitit's LocalExecutor)."""
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as error:  # no sbatch/srun here
        raise ConfigError(f"--launcher slurm: {error}") from None
    executor.update_parameters(**params)
    return executor


def attach_slurm_job(folder: Path, job_id: str):
    """A job recorded in jobs.json by an earlier command (tests swap in submitit.LocalJob)."""
    import submitit

    return submitit.SlurmJob(folder=folder, job_id=job_id)


def run_split_job(cwd: str, *args) -> dict:
    """What one Slurm job runs: `run_one_split` from the submitting command's directory."""
    import os

    os.chdir(cwd)
    return run_one_split(*args)


def submit_splits(own_args, passthrough: list[str], cfg, paths: dict, requested: dict, out_dir: Path
                  ) -> tuple[dict, dict]:
    """--launcher slurm: submit (or find the recorded job of) every unfinished split, wait unless --detach.

    Returns (finished metrics per split, failure message per split); a split still queued or running under
    --detach is in neither.
    """
    jobs_path = out_dir / "jobs.json"
    recorded = json.loads(jobs_path.read_text()) if jobs_path.is_file() else {}
    folder = out_dir / "slurm"
    executor = None
    jobs, failures = {}, {}
    for split_id, split in paths.items():
        if finished_metrics(split_id, split, requested[split_id]) is not None:
            continue
        entry = recorded.get(str(split_id))
        if entry is not None:
            job = attach_slurm_job(Path(entry["folder"]), entry["job_id"])
            if not job.done():
                print(f"split {split_id}: job {entry['job_id']} submitted earlier is {job.state}", flush=True)
                jobs[split_id] = job
                continue
            print(f"split {split_id}: job {entry['job_id']} ended ({job.state}) without finishing the split; "
                  "submitting it again", flush=True)
        if executor is None:
            executor = make_slurm_executor(folder, slurm_parameters(own_args))
        job = executor.submit(run_split_job, str(Path.cwd()), split_id, passthrough, cfg.model_name, split,
                              out_dir / "logs", requested[split_id])
        jobs[split_id] = job
        recorded[str(split_id)] = {"job_id": str(job.job_id), "folder": str(folder),
                                   "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_json(jobs_path, recorded, indent=2)  # after each submission: a crash loses no job id
        print(f"split {split_id}: submitted job {job.job_id} (logs in {folder})", flush=True)
    if own_args.detach and jobs:
        print(f"--detach: {len(jobs)} job(s) queued or running ({', '.join(str(j.job_id) for j in jobs.values())}); "
              "run the same command again to collect the table", flush=True)
    else:
        for split_id, job in jobs.items():
            try:
                job.result()
            except Exception as error:  # noqa: BLE001 - one failed job must not lose the others' table
                last_line = (str(error).strip().splitlines() or [""])[-1]
                failures[split_id] = f"job {job.job_id}: {type(error).__name__}: {last_line}"
    finished = {}
    for split_id, split in paths.items():
        metrics = finished_metrics(split_id, split, requested[split_id])
        if metrics is not None:
            finished[split_id] = metrics
        elif split_id not in failures and not own_args.detach:
            failures[split_id] = f"its job ended without writing {split.split_done}"
    return finished, failures


def aggregate(per_split: dict[int, dict]) -> dict:
    """Rows per split plus mean and (population) standard deviation, all in % as the paper reports."""
    if not per_split:
        raise ValueError("no finished split to aggregate")
    first = next(iter(per_split.values()))
    columns = metric_columns(first)[0]
    rows = {}
    for split_id in sorted(per_split):
        metrics = per_split[split_id]
        if list(metrics["iou_range"]) != list(first["iou_range"]):
            raise ValueError(f"split {split_id} was evaluated at other tIoU thresholds than the others")
        rows[split_id] = metric_columns(metrics)[1]
    matrix = np.array(list(rows.values()), dtype=np.float64)
    return {"columns": columns, "rows": rows, "mean": matrix.mean(axis=0).tolist(),
            "std": matrix.std(axis=0).tolist()}


def markdown_table(table: dict, title: str) -> str:
    header = "| split | " + " | ".join(table["columns"]) + " |"
    lines = [f"### {title}", "", header, "|" + "---|" * (len(table["columns"]) + 1)]
    for split_id, values in table["rows"].items():
        lines.append(f"| {split_id} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines.append("| mean | " + " | ".join(f"{v:.2f}" for v in table["mean"]) + " |")
    lines.append("| std | " + " | ".join(f"{v:.2f}" for v in table["std"]) + " |")
    return "\n".join(lines) + "\n"


def csv_table(table: dict) -> str:
    lines = [",".join(["split"] + table["columns"])]
    for split_id, values in table["rows"].items():
        lines.append(",".join([str(split_id)] + [f"{v:.4f}" for v in values]))
    lines.append(",".join(["mean"] + [f"{v:.4f}" for v in table["mean"]]))
    lines.append(",".join(["std"] + [f"{v:.4f}" for v in table["std"]]))
    return "\n".join(lines) + "\n"


def plot_average_map(table: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = table["columns"].index("avg mAP")
    ids = list(table["rows"])
    values = [table["rows"][i][column] for i in ids]
    mean, std = table["mean"][column], table["std"][column]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.bar([str(i) for i in ids], values, color="#4C72B0", label="per split")
    ax.axhline(mean, color="#C44E52", label=f"mean {mean:.2f}")
    ax.axhspan(mean - std, mean + std, color="#C44E52", alpha=0.15, label=f"± std {std:.2f}")
    ax.set_xlabel("split id")
    ax.set_ylabel("average mAP (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                  add_help=False)
    own.add_argument("--split_ids", type=parse_split_ids, default=list(range(10)),
                     help="which split ids, e.g. 0-9 or 0,3 (default 0-9)")
    own.add_argument("--jobs", type=int, default=1, help="splits run at once (processes; --launcher local)")
    own.add_argument("--launcher", choices=("local", "slurm"), default="local",
                     help="local: subprocesses on this machine; slurm: one submitit job per split")
    own.add_argument("--slurm_partition", default=None, help="Slurm partition")
    own.add_argument("--slurm_gpus", type=int, default=1, help="GPUs per job (default 1)")
    own.add_argument("--slurm_time", type=slurm_time_minutes, default=24 * 60,
                     help="time limit per job: minutes or [D-]HH:MM[:SS] (default 24:00:00)")
    own.add_argument("--slurm_account", default=None, help="Slurm account")
    own.add_argument("--slurm_extra", nargs="*", default=[], metavar="KEY=VALUE",
                     help="other submitit Slurm parameters, e.g. qos=high mem=64G cpus_per_task=8 constraint=a100")
    own.add_argument("--detach", action="store_true",
                     help="--launcher slurm: submit and return; the same command later collects the table")
    own_args, passthrough = own.parse_known_args(argv)
    if "-h" in passthrough or "--help" in passthrough:
        own.print_help()
        get_args_parser().print_help()
        return {}
    cfg = parse_config(passthrough)  # validates the main.py flags before anything runs
    if not cfg.model_name:
        raise ConfigError("--model_name is required (each split runs as <model_name>_split<id>)")
    if own_args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    out_dir = Path(cfg.output_root) / "results" / cfg.dataset_name / f"{cfg.model_name}_splits"
    paths = {i: split_paths(cfg.output_root, cfg.dataset_name, cfg.model_name, i) for i in own_args.split_ids}
    requested = {i: split_config(passthrough, cfg.model_name, i) for i in own_args.split_ids}
    for i in own_args.split_ids:  # a split finished with other flags stops the command before anything runs
        finished_metrics(i, paths[i], requested[i])
    if own_args.launcher == "slurm":
        slurm_parameters(own_args)  # an unknown --slurm_extra key stops before anything is submitted
        finished, failures = submit_splits(own_args, passthrough, cfg, paths, requested, out_dir)
        if len(finished) + len(failures) < len(paths):
            return {"pending": sorted(set(paths) - set(finished) - set(failures))}
    else:
        finished, failures = run_local(own_args, passthrough, cfg, paths, requested, out_dir)
    return write_table(cfg, out_dir, finished, failures)


def run_local(own_args, passthrough: list[str], cfg, paths: dict, requested: dict, out_dir: Path
              ) -> tuple[dict, dict]:
    """--launcher local: `--jobs` splits at once as subprocesses; (finished metrics, failure messages)."""
    with ThreadPoolExecutor(max_workers=own_args.jobs) as pool:
        futures = {i: pool.submit(run_one_split, i, passthrough, cfg.model_name, split, out_dir / "logs",
                                  requested[i])
                   for i, split in paths.items()}
        failures, finished = {}, {}
        for split_id, future in futures.items():
            try:
                finished[split_id] = future.result()
            except Exception as error:  # noqa: BLE001 - one failed split must not lose the others' table
                failures[split_id] = f"{type(error).__name__}: {error}"
    return finished, failures


def write_table(cfg, out_dir: Path, finished: dict, failures: dict) -> dict:
    """The table (Markdown, CSV, plot) of the finished splits; exits non-zero naming any failed split."""
    if not finished:
        raise SystemExit("no split finished: " + "; ".join(failures.values()))
    title = (f"{cfg.dataset_name} {cfg.split}:{100 - cfg.split}, model {cfg.model_name}, "
             f"selection {cfg.select_on}, eval_videos {cfg.eval_videos}")
    table = aggregate(finished)
    atomic_write_text(out_dir / "table.md", markdown_table(table, title))
    atomic_write_text(out_dir / "table.csv", csv_table(table))
    plot_average_map(table, out_dir / "average_mAP.png", title)
    print(markdown_table(table, title))
    print(f"written: {out_dir / 'table.md'}, {out_dir / 'table.csv'}, {out_dir / 'average_mAP.png'}")
    if failures:
        raise SystemExit("some splits failed: " + "; ".join(f"{i}: {m}" for i, m in failures.items()))
    return table


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Where a run writes: the original's folders (ckpt/, logs/, results/, runs/) under `--output_root`."""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from datasets.families import family_of
from utils.io import TEMP_SUFFIX, temp_pattern


@dataclass(frozen=True)
class RunPaths:
    """Output paths of one run (dataset + model name)."""

    root: Path
    dataset: str
    model: str

    @property
    def ckpt_dir(self) -> Path:
        return self.root / "ckpt" / self.dataset

    @property
    def best(self) -> Path:
        return self.ckpt_dir / f"best_{self.model}.pkl"

    @property
    def last(self) -> Path:
        return self.ckpt_dir / f"last_{self.model}.pkl"

    @property
    def state(self) -> Path:
        return self.ckpt_dir / f"state_{self.model}.pt"

    @property
    def log(self) -> Path:
        return self.root / "logs" / self.dataset / f"{self.model}.log"

    @property
    def config(self) -> Path:
        return self.root / "logs" / self.dataset / f"{self.model}_config.yaml"

    @property
    def results_dir(self) -> Path:
        return self.root / "results" / self.dataset / self.model

    @property
    def test_metrics(self) -> Path:
        """test.py's metrics file."""
        return self.results_dir / "test_metrics.json"

    @property
    def split_done(self) -> Path:
        """scripts/run_splits.py's mark of a finished split: its configuration and test metrics (only
        run_splits writes it, so a later test.py cannot pass for a finished split)."""
        return self.results_dir / "split_finished.json"

    @property
    def best_metrics(self) -> Path:
        return self.results_dir / "best_metrics.json"

    @property
    def lock(self) -> Path:
        """Held (fcntl) by the live training run of this name."""
        return self.root / "logs" / self.dataset / f".{self.model}.lock"

    def detections(self, epoch: int) -> Path:
        """`--save_result` detections of an epoch (-1: test.py), named as the original names them."""
        return self.results_dir / family_of(self.dataset).detection_file(epoch)

    @property
    def csv(self) -> Path:
        return self.root / "results" / "excel" / self.dataset / f"{self.model}_results.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "runs" / self.dataset / self.model


    def training_outputs(self) -> list[Path]:
        """What a training run of this name writes (files and folders), for the same-name check and
        `--overwrite`."""
        return [self.state, self.best, self.last, self.log, self.config, self.csv, self.results_dir,
                self.tensorboard]

    def existing_outputs(self) -> list[Path]:
        return [path for path in self.training_outputs() if path.exists()]

    def stale_temp_files(self) -> list[Path]:
        """Temporary files a killed atomic write (utils.io) of this run left behind: those named after its
        files in the shared folders, and any in its own results folder."""
        found = [stale for target in (self.state, self.best, self.last, self.config, self.csv)
                 if target.parent.is_dir() for stale in target.parent.glob(temp_pattern(target))]
        if self.results_dir.is_dir():
            found += self.results_dir.glob(f".*{TEMP_SUFFIX}")
        return [path for path in found if path.is_file()]


class RunLockedError(OSError):
    """Another live process holds the run's lock."""


class RunLock:
    """An exclusive `fcntl` lock on a file in the run's log folder, held while the run writes.

    The lock dies with its process (kill -9 included), so a crashed run never blocks the next one.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def acquire(self, run_name: str) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(f"--model_name {run_name}: a run of this name is already running ({holder}; lock "
                                 f"{self.path}); wait for it to finish or choose another --model_name") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def move_outputs_aside(paths: RunPaths) -> Path | None:
    """`--overwrite`: move every existing output of the run, as a whole, to
    `<output_root>/overwritten/<dataset>/<model>-<time>/` (same relative layout); returns that folder."""
    existing = paths.existing_outputs()
    if not existing:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = paths.root / "overwritten" / paths.dataset / f"{paths.model}-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = target.with_name(f"{paths.model}-{stamp}-{suffix}")
    for path in existing:
        destination = target / path.relative_to(paths.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(destination))
    return target


def run_paths(cfg) -> RunPaths:
    if not cfg.model_name:
        raise ValueError("--model_name is required: it names the checkpoint, log and result files")
    return RunPaths(Path(cfg.output_root), cfg.dataset_name, cfg.model_name)

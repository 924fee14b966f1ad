"""Where a run writes: the original's folders (ckpt/, logs/, results/, runs/) under `--output_root`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        """test.py's metrics file; scripts/run_splits.py takes it as the mark of a finished split."""
        return self.results_dir / "test_metrics.json"

    def detections(self, epoch: int) -> Path:
        """`--save_result` detections of an epoch (-1: test.py), named as the original names them."""
        subset = "val" if self.dataset == "ActivityNet13" else "test"
        return self.results_dir / f"detection_{subset}_{epoch}_raw.json"

    @property
    def csv(self) -> Path:
        return self.root / "results" / "excel" / self.dataset / f"{self.model}_results.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "runs" / self.dataset / self.model


def run_paths(cfg) -> RunPaths:
    if not cfg.model_name:
        raise ValueError("--model_name is required: it names the checkpoint, log and result files")
    return RunPaths(Path(cfg.output_root), cfg.dataset_name, cfg.model_name)

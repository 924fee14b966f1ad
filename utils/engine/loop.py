"""One training epoch and one evaluation pass; used by main.py, test.py and the scripts."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.families import family_of
from utils.device import autocast_context
from utils.distributed import gather_in_order, is_main_process, mean_over_ranks
from utils.engine.report import other_protocol
from utils.scoring.evaluation import ItemDetections, evaluate_detections, results_json


class NonFiniteLossError(RuntimeError):
    """The weighted loss became NaN or inf (the original aborts the run too)."""


_TARGET_TENSORS = ("segments", "labels", "semantic_labels", "salient_mask")


def targets_to_device(targets: list[dict], device: torch.device) -> list[dict]:
    moved = []
    for target in targets:
        item = dict(target)
        for key in _TARGET_TENSORS:
            value = item.get(key)
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            if isinstance(value, torch.Tensor):
                item[key] = value.to(device, non_blocking=True)
        moved.append(item)
    return moved


@dataclass
class StepResult:
    """What one optimizer step reports: the weighted total and every unweighted loss (Python floats), and
    the gradient norm `clip_grad_norm_` measured before clipping (None without clipping)."""

    total: float
    losses: dict[str, float]
    grad_norm: float | None


def train_step(model, criterion, optimizer, features: torch.Tensor, mask: torch.Tensor, targets: list[dict],
               clip_max_norm: float = 0.0, amp: bool = False, text_embeddings: torch.Tensor | None = None,
               where: str = "") -> StepResult:
    """One step as the original's training loop: forward, losses, weighted total (abort if not finite),
    zero_grad, backward, clip the global gradient norm to `clip_max_norm` (if > 0), optimizer step.

    `text_embeddings` are needed only by a model that classifies in training (no --enable_classAgnostic).
    `where` names the step in the non-finite-loss error.
    """
    with autocast_context(features.device, amp):
        outputs = model(features, mask, text_embeddings=text_embeddings)
    losses = criterion(outputs, targets)
    total = criterion.weighted_total(losses)
    total_value = float(total.detach())
    values = {key: float(value.detach()) for key, value in losses.items()}  # read once: sums, log, error
    # under torchrun: the global batch's losses, the same on every rank (a single process: unchanged)
    values = mean_over_ranks({"loss": total_value, **values})
    total_value = values.pop("loss")
    if not math.isfinite(total_value):
        raise NonFiniteLossError(f"{where}: loss is {total_value}; components: {values}")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = None
    if clip_max_norm > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm))
    optimizer.step()
    return StepResult(total_value, values, grad_norm)


def train_one_epoch(model, criterion, loader: DataLoader, optimizer, device: torch.device, epoch: int,
                    clip_max_norm: float = 0.0, amp: bool = False, log_every: int = 0, logger=None,
                    text_embeddings: torch.Tensor | None = None) -> dict:
    """Train for one epoch; return the mean of every loss over iterations (weighted total as `loss`)."""
    model.train()
    criterion.train()
    weight_dict = criterion.weight_dict
    sums: dict[str, float] = defaultdict(float)
    iterations = 0
    if text_embeddings is not None:
        text_embeddings = text_embeddings.to(device)
    progress = tqdm(loader, desc=f"epoch {epoch} train", leave=False, dynamic_ncols=True,
                    disable=not is_main_process())  # under torchrun one bar, rank 0's
    for features, mask, targets, _ in progress:
        features = features.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        targets = targets_to_device(targets, device)
        step = train_step(model, criterion, optimizer, features, mask, targets, clip_max_norm, amp,
                          text_embeddings, where=f"epoch {epoch} iteration {iterations}")
        total_value, values = step.total, step.losses

        iterations += 1
        sums["loss"] += total_value
        for key, value in values.items():
            sums[key] += value
        progress.set_postfix(loss=f"{total_value:.4f}")
        if logger is not None and log_every and iterations % log_every == 0:
            # as the original's log: the weighted total, then every loss unscaled and scaled (DEBUG: file only)
            logger.debug(f"epoch {epoch} iter {iterations}/{len(loader)} loss {total_value:.4f} | unscaled "
                         + " ".join(f"{k} {v:.4f}" for k, v in values.items()) + " | scaled "
                         + " ".join(f"{k} {values[k] * w:.4f}" for k, w in weight_dict.items() if k in values))
    return {key: value / max(iterations, 1) for key, value in sums.items()}


@torch.no_grad()
def predict(model, postprocessor, loader: DataLoader, text_embeddings: torch.Tensor, device: torch.device,
            amp: bool = False, desc: str = "inference", filter_threshold: float = 0.0) -> list[ItemDetections]:
    """Run the model over `loader`; return per-item detection records for `evaluate_detections`.

    `filter_threshold > 0` drops detections scoring below it (the original's `--filter_threshold`; 0 = off).
    """
    model.eval()
    text_embeddings = text_embeddings.to(device)
    records = []
    for features, mask, _, infos in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                                        disable=not is_main_process()):
        features = features.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        with autocast_context(device, amp):
            outputs = model(features, mask, text_embeddings=text_embeddings)
        outputs = {key: value.float() if torch.is_tensor(value) and value.is_floating_point() else value
                   for key, value in outputs.items()}
        durations = torch.tensor([info.duration for info in infos], device=device)
        for info, detections in zip(infos, postprocessor(outputs, durations)):
            if filter_threshold > 0:
                keep = detections["scores"] >= filter_threshold
                detections = {key: value[keep] for key, value in detections.items()}
            records.append(ItemDetections(info, detections["segments"].cpu().numpy(),
                                          detections["scores"].cpu().numpy(), detections["labels"].cpu().numpy()))
    return records


PROPOSAL_CLASS = "foreground"


def scored_classes(cfg, dataset) -> list[str]:
    """The classes detections are labelled with: the dataset's, or the single "foreground" class of
    class-agnostic proposals (--eval_proposal)."""
    return [PROPOSAL_CLASS] if cfg.eval_proposal else list(dataset.classes)


def scored_ground_truth(cfg, dataset) -> dict:
    """The evaluator's ground truth; with --eval_proposal every instance (of the unseen inference classes)
    becomes "foreground", so mAP, AR@AN and AUC measure class-agnostic proposal quality."""
    if not cfg.eval_proposal:
        return dataset.ground_truth
    return {video: [(start, end, PROPOSAL_CLASS) for start, end, _ in rows]
            for video, rows in dataset.ground_truth.items()}


def evaluate(model, postprocessor, loader: DataLoader, dataset, text_embeddings: torch.Tensor,
             device: torch.device, cfg, eval_videos: str | None = None,
             records: list[ItemDetections] | None = None) -> tuple[dict, dict, list[ItemDetections]]:
    """Predict (unless `records` are given; `--amp`, `--filter_threshold`) and score under `eval_videos`
    (default `--eval_videos`); returns (metrics, merged detections, records)."""
    if records is None:
        # under torchrun each rank predicts its shard of the items (run.make_loader); gathered in dataset
        # order, every rank scores exactly what a single process scores
        records = gather_in_order(predict(model, postprocessor, loader, text_embeddings, device, amp=cfg.amp,
                                          filter_threshold=cfg.filter_threshold))
    window_fusion = family_of(cfg.dataset_name).fuses_windows(cfg)
    metrics, merged = evaluate_detections(
        records, scored_ground_truth(cfg, dataset), dataset.video_ids, scored_classes(cfg, dataset), cfg.dataset_name,
        eval_videos=eval_videos or cfg.eval_videos, window_fusion=window_fusion)
    return metrics, merged, records


@dataclass
class Evaluator:
    """One evaluated set (the test set, the validation videos, the training set) with what its evaluation
    needs: predict with the model as it is now, then score (`--eval_videos`, `--eval_proposal`)."""

    dataset: Any
    loader: DataLoader
    text_embeddings: torch.Tensor
    model: Any
    postprocessor: Any
    device: torch.device
    cfg: Any

    def evaluate(self, eval_videos: str | None = None, records: list[ItemDetections] | None = None
                 ) -> tuple[dict, dict, list[ItemDetections]]:
        """(metrics, merged detections, records) under `eval_videos` (default `--eval_videos`); see `evaluate`."""
        return evaluate(self.model, self.postprocessor, self.loader, self.dataset, self.text_embeddings,
                        self.device, self.cfg, eval_videos=eval_videos, records=records)

    def evaluate_both_protocols(self) -> tuple[dict, dict, dict]:
        """One prediction pass scored under `--eval_videos` and under the other protocol.

        Returns (metrics, metrics of the other protocol, merged detections).
        """
        metrics, merged, records = self.evaluate()
        other, _, _ = self.evaluate(eval_videos=other_protocol(self.cfg.eval_videos), records=records)
        return metrics, other, merged

    def results_json(self, merged: dict) -> dict:
        """The results file of merged detections (labels named as scored: classes or "foreground")."""
        return results_json(merged, scored_classes(self.cfg, self.dataset))


def evaluate_both_protocols(model, postprocessor, loader: DataLoader, dataset, text_embeddings: torch.Tensor,
                            device: torch.device, cfg) -> tuple[dict, dict, dict]:
    """`Evaluator.evaluate_both_protocols` of these arguments."""
    return Evaluator(dataset, loader, text_embeddings, model, postprocessor, device, cfg).evaluate_both_protocols()

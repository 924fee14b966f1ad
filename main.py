"""Train GAP. The paper's training command lines work verbatim (add `--device cpu` without a GPU).

Reads like a table of contents: configuration -> data -> text embeddings -> model -> optimisation ->
epochs (train, evaluate, select, checkpoint) -> summary.
"""
from __future__ import annotations

import math

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import trange

from datasets import build_dataset
from models.build import build_criterion, build_model, build_postprocessor, trains_classes
from models.text_encoder import build_text_encoder
from utils.checkpoint import (
    load_training_state,
    read_state_dict,
    restore_rng_states,
    save_state_dict,
    save_training_state,
)
from utils.config import (
    config_differences,
    config_notes,
    config_to_dict,
    dump_config,
    get_args_parser,
    parse_config,
)
from utils.engine import evaluate, evaluate_both_protocols, scored_classes, train_one_epoch
from utils.evaluation import results_json
from utils.io import atomic_write_json
from utils.logging import setup_logger
from utils.optim import build_optimization
from utils.paths import run_paths
from utils.report import (
    append_csv_row,
    log_scalars,
    metrics_table,
    other_protocol,
    summary_block,
    truncate_csv,
    write_metrics_json,
)
from utils.run import (
    make_loader,
    resolve_device,
    seed_everything,
    text_embeddings_for,
)
from utils.selection import SELECTION_LABELS, split_validation


def main(argv=None) -> dict:
    cfg = parse_config(argv, get_args_parser("Train GAP for zero-shot temporal action localization"))
    paths = run_paths(cfg)
    logger = setup_logger(paths.log, append=bool(cfg.resume))
    logger.info("command configuration:\n" + "\n".join(f"  {k}: {v}" for k, v in config_to_dict(cfg).items()))
    for note in config_notes(cfg):
        logger.info(f"note: {note}")
    dump_config(cfg, paths.config)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # data
    train_set = build_dataset(cfg, "train")
    test_set = build_dataset(cfg, "inference")
    val_set = None
    if cfg.select_on == "val":
        train_set, val_set = split_validation(cfg, train_set)
    shuffle_generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = make_loader(train_set, cfg, train=True, generator=shuffle_generator)
    test_loader = make_loader(test_set, cfg, train=False)
    # seen-class evaluation loaders: the training set unshuffled (--train_interval), held-out videos (--select_on val)
    train_eval_loader = make_loader(train_set, cfg, train=False) if cfg.train_interval != -1 else None
    val_loader = make_loader(val_set, cfg, train=False) if val_set is not None else None
    logger.info(f"train: {len(train_set)} items, {len(train_loader)} iterations/epoch, classes "
                f"{train_set.classes}")
    logger.info(f"inference: {len(test_set)} items, {len(test_set.ground_truth)} videos with ground truth, "
                f"classes {test_set.classes}")

    # text embeddings (computed once, cached) and model
    text_encoder = build_text_encoder(cfg)
    test_text = text_embeddings_for(test_set, text_encoder)
    val_text = text_embeddings_for(val_set, text_encoder) if val_loader is not None else None
    train_text = text_embeddings_for(train_set, text_encoder) \
        if train_eval_loader is not None or trains_classes(cfg) else None  # loss_ce needs the text
    model = build_model(cfg)
    model.set_logit_scale(text_encoder.logit_scale)
    model.to(device)
    criterion = build_criterion(cfg).to(device)
    postprocessor = build_postprocessor(cfg)
    optimizer, scheduler = build_optimization(model, cfg)
    logger.info(f"model: {sum(p.numel() for p in model.parameters()):,} parameters on {device}"
                f"{' with AMP' if cfg.amp else ''}")

    start_epoch, best, history = 0, None, []
    if cfg.resume:
        state = load_training_state(cfg.resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle_generator.set_state(state["shuffle_generator"])
        restore_rng_states(state["rng"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        logger.info(f"resumed from {cfg.resume}: continuing at epoch {start_epoch}")
        differing = config_differences(state.get("config", {}), cfg)
        if differing:
            logger.warning("resuming with flags that differ from the saved run (saved -> now): " + "; ".join(
                f"{key} {old!r} -> {new!r}" for key, (old, new) in differing.items()))
        dropped = truncate_csv(paths.csv, state["epoch"])
        if dropped:
            logger.info(f"dropped {dropped} CSV row(s) of epochs after {state['epoch']} (the kill came before "
                        "their state was saved; they are evaluated again)")

    writer = SummaryWriter(str(paths.tensorboard), purge_step=start_epoch if cfg.resume else None)
    selection = SELECTION_LABELS[cfg.select_on]
    for epoch in trange(start_epoch, cfg.epochs, desc="epochs", initial=start_epoch, total=cfg.epochs,
                        dynamic_ncols=True):
        losses = train_one_epoch(model, criterion, train_loader, optimizer, device, epoch,
                                 cfg.clip_max_norm, amp=cfg.amp, log_every=1, logger=logger,
                                 text_embeddings=train_text if trains_classes(cfg) else None)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
        scheduler.step()
        for key, value in losses.items():
            writer.add_scalar(f"train/{key}", value, epoch)
        logger.info(f"epoch {epoch} train losses: " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        save_state_dict(model, paths.last)

        entry = {"epoch": epoch, "losses": losses}
        if train_eval_loader is not None and epoch % cfg.train_interval == 0:
            # the original's --train_interval: the training set (seen classes, its own windows), unshuffled
            train_metrics, _, _ = evaluate(model, postprocessor, train_eval_loader, train_set, train_text, device,
                                           cfg)
            entry["train_eval"] = train_metrics
            log_scalars(writer, "train_eval", train_metrics, epoch)
            logger.info(metrics_table(train_metrics, f"epoch {epoch} training set (seen classes)"))
        if cfg.test_interval != -1 and epoch % cfg.test_interval == 0:
            entry.update(evaluate_epoch(cfg, epoch, model, postprocessor, test_loader, test_set, test_text,
                                        device, paths, writer, logger))
        if val_loader is not None:
            val_metrics, _, _ = evaluate(model, postprocessor, val_loader, val_set, val_text, device, cfg)
            entry["val"] = val_metrics
            log_scalars(writer, "val", val_metrics, epoch)
            logger.info(metrics_table(val_metrics, f"epoch {epoch} validation (held-out seen-class videos)"))
        score = selection_score(cfg.select_on, entry)
        if score is not None and (best is None or score > best["score"]):
            best = {"score": score, "epoch": epoch, "test": entry.get("test"),
                    "test_other": entry.get("test_other")}
            save_state_dict(model, paths.best)
            logger.info(f"epoch {epoch}: new best ({selection}) -> {paths.best}")
        if best is not None:
            score_text = "" if cfg.select_on == "last" else f", {cfg.select_on} average mAP {100 * best['score']:.2f}"
            logger.info(f"best so far: epoch {best['epoch']}{score_text}")
        history.append(entry)
        save_training_state(paths.state, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch, best=best, history=history,
                            shuffle_generator=shuffle_generator.get_state(), config=config_to_dict(cfg))
    if best is not None and best.get("test") is None and paths.best.is_file():
        # val/last selection chose an epoch without a test evaluation (test_interval > 1 or -1): evaluate it now
        logger.info(f"evaluating the selected epoch {best['epoch']} ({paths.best}) on the test set")
        model.load_state_dict(read_state_dict(paths.best))
        best = {**best, **evaluate_selected(cfg, model, postprocessor, test_loader, test_set, test_text, device)[0]}
    writer.close()
    return finish(cfg, best, selection, paths, logger)


def evaluate_epoch(cfg, epoch, model, postprocessor, loader, dataset, text, device, paths, writer, logger):
    """Evaluate on the unseen classes (both protocols) and record everything of this epoch."""
    result, merged = evaluate_selected(cfg, model, postprocessor, loader, dataset, text, device)
    other = other_protocol(cfg.eval_videos)
    logger.info(metrics_table(result["test"], f"epoch {epoch} test (unseen classes, eval_videos={cfg.eval_videos})"))
    logger.info(f"epoch {epoch} test eval_videos={other}: average mAP {100 * result['test_other']['average_mAP']:.2f}")
    log_scalars(writer, f"test_eval_videos_{cfg.eval_videos}", result["test"], epoch)
    log_scalars(writer, f"test_eval_videos_{other}", result["test_other"], epoch)
    append_csv_row(paths.csv, epoch, result["test"])
    if cfg.save_result:
        atomic_write_json(paths.detections(epoch), results_json(merged, scored_classes(cfg, dataset)))
    return result


def evaluate_selected(cfg, model, postprocessor, loader, dataset, text, device) -> tuple[dict, dict]:
    """Test-set metrics under `--eval_videos` and under the other protocol, from the same detections."""
    metrics, other, merged = evaluate_both_protocols(model, postprocessor, loader, dataset, text, device, cfg)
    return {"test": metrics, "test_other": other}, merged


def selection_score(select_on: str, entry: dict) -> float | None:
    if select_on == "last":
        return float(entry["epoch"])
    key = "test" if select_on == "test" else "val"
    metrics = entry.get(key)
    return None if metrics is None else metrics["average_mAP"]


def finish(cfg, best, selection, paths, logger) -> dict:
    if best is None or best.get("test") is None:
        logger.info("no test evaluation was run (test_interval -1 or no epoch): nothing to summarise")
        return {"best": best}
    logger.info("\n" + summary_block(best["test"], best["test_other"], selection, best["epoch"], cfg.eval_videos))
    other_key = f"eval_videos_{other_protocol(cfg.eval_videos)}"
    write_metrics_json(paths.results_dir / "best_metrics.json", best["test"], epoch=best["epoch"],
                       selection=cfg.select_on, **{other_key: best["test_other"]})
    if not math.isfinite(best["test"]["average_mAP"]):
        logger.warning("the selected epoch has a non-finite mAP")
    return {"best": best}


if __name__ == "__main__":
    main()

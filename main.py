"""Train GAP. The paper's training command lines work verbatim (add `--device cpu` without a GPU).

Reads like a table of contents: configuration -> data -> text embeddings -> model -> optimisation ->
epochs (train, evaluate, select, checkpoint) -> summary.
"""
from __future__ import annotations

import logging
import math
import sys

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import trange

from models.build import build_criterion, build_model, build_postprocessor, trains_classes
from models.text_encoder import build_text_encoder
from utils.cli import one_line, run_cli
from utils.config import (
    ConfigError,
    check_ranges,
    config_differences,
    config_notes,
    config_to_dict,
    dump_config,
    get_args_parser,
    parse_config,
)
from utils.device import resolve_device
from utils.distributed import (
    close_distributed,
    data_parallel,
    first_error,
    init_distributed,
    is_distributed,
    is_main_process,
    reduce_num_boxes,
    world_size,
)
from utils.engine.checkpoint import (
    load_training_state,
    load_weights,
    restore_rng_states,
    save_state_dict,
    save_training_state,
)
from utils.engine.compiled import run_modules
from utils.engine.loop import Evaluator, train_one_epoch
from utils.engine.optim import build_optimization, load_optimizer_state
from utils.engine.paths import RunLock, move_outputs_aside, run_paths
from utils.engine.report import (
    append_csv_row,
    check_csv_rows,
    log_scalars,
    metrics_table,
    other_protocol,
    summary_block,
    truncate_csv,
    write_metrics_json,
)
from utils.engine.run import (
    make_loader,
    seed_everything,
    text_embeddings_for,
)
from utils.engine.selection import SELECTION_LABELS, split_validation
from utils.engine.synthetic import build_dataset, prepare_synthetic
from utils.io import atomic_torch_save, atomic_write_json, check_writable_location
from utils.logging import attach_log_file, close_logger, get_logger, setup_logger

logger = get_logger()

# Flags that may differ on --resume besides the run-independent ones (device, workers, ...): a longer
# --epochs continues the run; the rest only decide where or whether extra files go.
RESUME_MAY_CHANGE = ("epochs", "save_result", "output_root", "text_cache_dir", "clip_download_root")
# Refused on --resume, with the reason: the optimizer and scheduler are restored with their saved values.
OPTIMIZER_FLAGS = ("lr", "lr_backbone", "weight_decay", "lr_drop", "clip_max_norm")


def main(argv=None) -> dict:
    setup_logger()  # console now; the run's log file opens once everything is validated
    cfg = parse_config(argv, get_args_parser("Train GAP for zero-shot temporal action localization"))
    check_ranges(cfg, training=True)
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: give one of them")
    paths = run_paths(cfg)
    device = init_distributed(resolve_device(cfg.device))  # torchrun: this rank's device, its process group
    primary = is_main_process()  # the only rank that writes (checkpoints, logs, CSV, TensorBoard, results, lock)
    if not primary:
        quiet_console()
    check_writable_location(paths.root, "--output_root")
    state = load_resume_state(cfg, paths) if cfg.resume else None
    check_run_name_free(cfg, paths)
    seed_everything(cfg.seed)

    # data (every file is validated here, before anything is written; the embedded demo writes itself first)
    on_main_first(lambda: prepare_synthetic(cfg))  # the embedded demo is generated once, by rank 0
    sets = build_sets(cfg)
    shuffle_generator = torch.Generator().manual_seed(cfg.seed)
    train_set, train_loader = sets["train"], training_loader(cfg, sets["train"], shuffle_generator)
    eval_loaders = {name: make_loader(sets[SET_OF[name]], cfg, train=False) for name in evaluated_sets(cfg)}

    # text embeddings (computed once, cached) and model
    text_encoder = build_text_encoder(cfg)
    texts = {name: text_embeddings_for(sets[name], text_encoder) for name in text_sets(cfg)}
    train_text = texts.get("train")
    model = build_model(cfg)
    model.set_logit_scale(text_encoder.logit_scale)
    model.to(device)
    criterion = build_criterion(cfg).to(device)
    if is_distributed():
        criterion.reduce_num_boxes = reduce_num_boxes  # DETR's normaliser: boxes of all ranks / world size
    postprocessor = build_postprocessor(cfg)
    optimizer, scheduler = build_optimization(model, cfg)
    start_epoch, best, best_weights, history = 0, None, None, []
    if state is not None:
        load_weights(model, state["model"], f"--resume {cfg.resume}")
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        best_weights = state.get("best_model")
    # trains through DDP (gradients averaged over ranks); `model` itself is saved, loaded and optimised
    train_model = data_parallel(model, device)

    # validated (on every rank): from here on rank 0 writes, holding its lock
    lock = on_main_first(lambda: take_run(cfg, paths))
    try:
        logger.info("command configuration:\n" + "\n".join(f"  {k}: {v}" for k, v in config_to_dict(cfg).items()))
        for note in config_notes(cfg):
            logger.info(f"note: {note}")
        if primary:
            dump_config(cfg, paths.config)
        logger.info(f"batch: --batch_size {cfg.batch_size} per process x {world_size()} process(es) = global batch "
                    f"{cfg.batch_size * world_size()}")
        logger.info(f"train: {len(train_set)} items, {len(train_loader)} iterations/epoch, classes "
                    f"{train_set.classes}")
        logger.info(f"inference: {len(sets['test'])} items, {len(sets['test'].ground_truth)} videos with ground "
                    f"truth, classes {sets['test'].classes}")
        logger.info(f"model: {sum(p.numel() for p in model.parameters()):,} parameters on {device}"
                    f"{' with AMP' if cfg.amp else ''}{', compiled (torch.compile)' if cfg.compile else ''}")
        # --compile: wrappers sharing the parameters of `model` (whose plain names every checkpoint keeps)
        train_model, predict_model = run_modules(model, train_model, cfg.compile, device)
        evaluators = {name: Evaluator(sets[SET_OF[name]], loader, texts[SET_OF[name]], predict_model, postprocessor,
                                      device, cfg)
                      for name, loader in eval_loaders.items()}
        if state is not None:
            shuffle_generator.set_state(state["shuffle_generator"])
            restore_rng_states(state["rng"])
            logger.info(f"resumed from {cfg.resume}: continuing at epoch {start_epoch} of {cfg.epochs}")
            changed = config_differences(state.get("config", {}), cfg, ignore=("cfg_path", "resume", "overwrite",
                                                                                "debug"))
            if changed:
                logger.info("applied on resume (saved -> now): " + ", ".join(
                    f"--{key} {old!r} -> {new!r}" for key, (old, new) in changed.items()))
            if primary and best is not None and best_weights is not None:
                publish_best(paths, cfg, best, best_weights)  # repairs a kill between the state and best_ writes
            dropped = truncate_csv(paths.csv, state["epoch"]) if primary else 0
            if dropped:
                logger.info(f"dropped {dropped} CSV row(s) of epochs after {state['epoch']} (the kill came before "
                            "their state was saved; they are evaluated again)")

        def save_state(epoch: int) -> None:
            if not primary:
                return
            save_training_state(paths.state, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), epoch=epoch, best=best, best_model=best_weights,
                                history=history, shuffle_generator=shuffle_generator.get_state(),
                                config=config_to_dict(cfg))

        writer = (SummaryWriter(str(paths.tensorboard), purge_step=start_epoch if cfg.resume else None)
                  if primary else None)
        selection = SELECTION_LABELS[cfg.select_on]
        epoch = start_epoch - 1
        for epoch in trange(start_epoch, cfg.epochs, desc="epochs", initial=start_epoch, total=cfg.epochs,
                            dynamic_ncols=True, disable=not primary):
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)  # torchrun: DistributedSampler's order of this epoch
            losses = train_one_epoch(train_model, criterion, train_loader, optimizer, device, epoch,
                                     cfg.clip_max_norm, amp=cfg.amp, log_every=1, logger=logger,
                                     text_embeddings=train_text if trains_classes(cfg) else None)
            if primary:
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
                for key, value in losses.items():
                    writer.add_scalar(f"train/{key}", value, epoch)
            scheduler.step()
            logger.info(f"epoch {epoch} train losses: " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
            if primary:
                save_state_dict(model, paths.last)

            entry = {"epoch": epoch, "losses": losses, **evaluate_sets(cfg, epoch, evaluators, paths, writer)}
            improved, best, best_weights = select(cfg, entry, best, best_weights, model)
            history.append(entry)
            # the state (with the best weights) is written first: best_<model>.pkl and best_metrics.json are
            # derived from it, so a kill anywhere in between is repaired by --resume
            save_state(epoch)
            if improved and primary:
                publish_best(paths, cfg, best, best_weights)
                logger.info(f"epoch {epoch}: new best ({selection}) -> {paths.best}")
            if best is not None:
                score_text = ("" if cfg.select_on == "last"
                              else f", {cfg.select_on} average mAP {100 * best['score']:.2f}")
                logger.info(f"best so far: epoch {best['epoch']}{score_text}")
        if best is not None and best.get("test") is None and best_weights is not None:
            # val/last selection chose an epoch without a test evaluation (test_interval > 1 or -1): evaluate it now
            logger.info(f"evaluating the selected epoch {best['epoch']} ({paths.best}) on the test set")
            model.load_state_dict(best_weights)
            best = {**best, **evaluate_selected(evaluators["test"])[0]}
            save_state(epoch)
            if primary:
                publish_best(paths, cfg, best, best_weights)
        if primary:
            writer.close()
        result = finish(cfg, best, selection, paths, logger)
    finally:
        if lock is not None:
            lock.release()
    close_logger()
    close_distributed()
    return result


def quiet_console() -> None:
    """Ranks other than 0 print warnings and errors only (rank 0 logs the run once)."""
    for handler in logger.handlers:
        handler.setLevel(max(handler.level, logging.WARNING))


def on_main_first(step):
    """Run `step` on rank 0 (the others wait) and return its result there (None elsewhere); an error of
    rank 0 is raised on every rank with the same line, so no rank hangs. A single process: `step()`."""
    result, error = None, None
    if is_main_process():
        try:
            result = step()
        except (ValueError, OSError) as caught:
            if not is_distributed():
                raise
            error = caught
    message = first_error(None if error is None else one_line(error))
    if error is not None:
        raise error
    if message is not None:
        raise ConfigError(message)
    return result


def take_run(cfg, paths) -> RunLock:
    """Rank 0, validated: take the run's lock and open its outputs (released if opening fails)."""
    lock = RunLock(paths.lock).acquire(cfg.model_name)
    try:
        open_run_outputs(cfg, paths)
    except BaseException:
        lock.release()
        raise
    return lock


def open_run_outputs(cfg, paths) -> None:
    """Under the run's lock: re-check the name, move an earlier run aside (--overwrite), remove temporary
    files a killed write left, open the log (appending)."""
    check_run_name_free(cfg, paths)  # again, under the lock: a run of this name may have just finished
    moved = move_outputs_aside(paths) if cfg.overwrite else None
    stale = paths.stale_temp_files()
    for path in stale:
        path.unlink()
    attach_log_file(paths.log)
    if moved is not None:
        logger.info(f"--overwrite: the earlier outputs of {cfg.model_name} were moved to {moved}")
    if stale:
        logger.info(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                    + ", ".join(str(p) for p in stale))


def load_resume_state(cfg, paths) -> dict:
    """The state of `--resume`, checked against this command: same run (data, split, model, optimizer),
    epochs left to train. Flags that may differ: `RESUME_MAY_CHANGE`."""
    state = load_training_state(cfg.resume)
    differing = {key: change for key, change in config_differences(state.get("config", {}), cfg).items()
                 if key not in RESUME_MAY_CHANGE}
    if differing:
        optimizer = [key for key in differing if key in OPTIMIZER_FLAGS]
        note = (f" (optimizer flags {', '.join('--' + k for k in optimizer)} are not applied on resume: the restored "
                "optimizer and scheduler continue with the saved values)") if optimizer else ""
        changes = ", ".join(f"--{key} {old!r} -> {new!r}" for key, (old, new) in differing.items())
        raise ConfigError(f"--resume {cfg.resume}: flags differ from the saved run (saved -> now): {changes}{note}; "
                          "drop them to continue the same run, or start a new run with another --model_name")
    if state["epoch"] + 1 >= cfg.epochs:
        raise ConfigError(f"--resume {cfg.resume}: the run already finished epoch {state['epoch']} of --epochs "
                          f"{cfg.epochs}; pass a larger --epochs to train on, or evaluate it with test.py")
    check_csv_rows(paths.csv)
    return state


def check_run_name_free(cfg, paths) -> None:
    """A new run never overwrites or appends to an earlier run of the same name (unless --overwrite)."""
    if cfg.resume or cfg.overwrite:
        return
    existing = paths.existing_outputs()
    if existing:
        how = (f"continue it with --resume {paths.state}, " if paths.state.is_file() else "")
        raise ConfigError(f"--model_name {cfg.model_name}: a run of this name already has outputs under "
                          f"{paths.root} ({', '.join(str(p) for p in existing[:3])}"
                          f"{', ...' if len(existing) > 3 else ''}); {how}replace it with --overwrite (its outputs "
                          "are moved to overwritten/), or choose another --model_name")


def publish_best(paths, cfg, best: dict, weights: dict) -> None:
    """Write best_<model>.pkl and best_metrics.json from the state's best. The metrics file is removed first,
    so that whenever it exists it describes the weights beside it."""
    paths.best_metrics.unlink(missing_ok=True)
    atomic_torch_save(weights, paths.best)
    if best.get("test") is not None:
        other_key = f"eval_videos_{other_protocol(cfg.eval_videos)}"
        write_metrics_json(paths.best_metrics, best["test"], epoch=best["epoch"], selection=cfg.select_on,
                           **{other_key: best["test_other"]})


def build_sets(cfg) -> dict:
    """The run's datasets: "train" (seen classes, training windows), "test" (unseen classes) and, with
    --select_on val, "val" (held-out training videos, inference windows; taken out of "train")."""
    sets = {"train": build_dataset(cfg, "train"), "test": build_dataset(cfg, "inference")}
    if cfg.select_on == "val":
        sets["train"], sets["val"] = split_validation(cfg, sets["train"])
    return sets


def training_loader(cfg, train_set, generator: torch.Generator):
    loader = make_loader(train_set, cfg, train=True, generator=generator)
    if len(loader) == 0:
        raise ConfigError(f"--batch_size {cfg.batch_size}: the training set has {len(train_set)} items and the last "
                          f"partial batch is dropped (as the original), so an epoch would train 0 iterations; use "
                          f"--batch_size {len(train_set)} or less")
    return loader


SET_OF = {"train_eval": "train", "test": "test", "val": "val"}  # evaluation -> the set it evaluates


def evaluated_sets(cfg) -> list[str]:
    """The sets evaluated during training, in evaluation order: the training set itself (seen classes, its
    own windows, unshuffled; --train_interval), the test set, the held-out videos (--select_on val)."""
    return (["train_eval"] if cfg.train_interval != -1 else []) + ["test"] + (["val"] if cfg.select_on == "val" else [])


def text_sets(cfg) -> list[str]:
    """The sets whose class text is needed: the evaluated ones, and the training set when loss_ce trains the
    class logits."""
    names = ["test"] + (["val"] if cfg.select_on == "val" else [])
    return names + (["train"] if cfg.train_interval != -1 or trains_classes(cfg) else [])


def evaluate_sets(cfg, epoch: int, evaluators: dict, paths, writer) -> dict:
    """This epoch's evaluations (each set on its interval), logged; returns the history entry's metrics."""
    entry = {}
    if "train_eval" in evaluators and epoch % cfg.train_interval == 0:
        entry["train_eval"] = evaluators["train_eval"].evaluate()[0]
        log_scalars(writer, "train_eval", entry["train_eval"], epoch)
        logger.info(metrics_table(entry["train_eval"], f"epoch {epoch} training set (seen classes)"))
    if cfg.test_interval != -1 and epoch % cfg.test_interval == 0:
        entry.update(evaluate_test_set(cfg, epoch, evaluators["test"], paths, writer))
    if "val" in evaluators:
        entry["val"] = evaluators["val"].evaluate()[0]
        log_scalars(writer, "val", entry["val"], epoch)
        logger.info(metrics_table(entry["val"], f"epoch {epoch} validation (held-out seen-class videos)"))
    return entry


def evaluate_test_set(cfg, epoch: int, evaluator, paths, writer) -> dict:
    """Evaluate on the unseen classes (both protocols) and record everything of this epoch."""
    result, merged = evaluate_selected(evaluator)
    other = other_protocol(cfg.eval_videos)
    logger.info(metrics_table(result["test"], f"epoch {epoch} test (unseen classes, eval_videos={cfg.eval_videos})"))
    logger.info(f"epoch {epoch} test eval_videos={other}: average mAP {100 * result['test_other']['average_mAP']:.2f}")
    log_scalars(writer, f"test_eval_videos_{cfg.eval_videos}", result["test"], epoch)
    log_scalars(writer, f"test_eval_videos_{other}", result["test_other"], epoch)
    if not is_main_process():
        return result
    append_csv_row(paths.csv, epoch, result["test"])
    if cfg.save_result:
        atomic_write_json(paths.detections(epoch), evaluator.results_json(merged))
    return result


def evaluate_selected(evaluator) -> tuple[dict, dict]:
    """Test-set metrics under `--eval_videos` and under the other protocol, from the same detections."""
    metrics, other, merged = evaluator.evaluate_both_protocols()
    return {"test": metrics, "test_other": other}, merged


def select(cfg, entry: dict, best: dict | None, best_weights: dict | None, model) -> tuple[bool, dict, dict]:
    """(improved, best, best weights) after this epoch's entry (--select_on); the weights copied to CPU."""
    score = selection_score(cfg.select_on, entry)
    if not (score is not None and (best is None or score > best["score"])):  # a NaN score never improves
        return False, best, best_weights
    best = {"score": score, "epoch": entry["epoch"], "test": entry.get("test"), "test_other": entry.get("test_other")}
    return True, best, {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def selection_score(select_on: str, entry: dict) -> float | None:
    if select_on == "last":
        return float(entry["epoch"])
    key = "test" if select_on == "test" else "val"
    metrics = entry.get(key)
    return None if metrics is None else metrics["average_mAP"]


def finish(cfg, best, selection, paths, logger) -> dict:
    if best is None or best.get("test") is None:
        logger.info("no test evaluation was run (test_interval -1 or no epoch): nothing to summarise")
    else:
        logger.info("\n" + summary_block(best["test"], best["test_other"], selection, best["epoch"], cfg.eval_videos))
        if not math.isfinite(best["test"]["average_mAP"]):
            logger.warning("the selected epoch has a non-finite mAP")
    logger.info("outputs:\n" + "\n".join(f"  {label}: {path}" for label, path in (
        ("best checkpoint", paths.best), ("last checkpoint", paths.last), ("state (--resume)", paths.state),
        ("log", paths.log), ("configuration", paths.config), ("results CSV", paths.csv),
        ("results", paths.results_dir), ("tensorboard", paths.tensorboard)) if path.exists()))
    return {"best": best}


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Evaluate a checkpoint. The paper's test command lines work verbatim (add `--device cpu` without a GPU).

Loads `./ckpt/<dataset_name>/best_<model_name>.pkl` (or `--ckpt PATH`; released checkpoints load as they
are), evaluates on the unseen classes, prints the table, writes the metrics JSON and, with `--save_result`,
the detections.
"""
from __future__ import annotations

import sys
from pathlib import Path

from models.build import build_model, build_postprocessor
from models.text_encoder import build_text_encoder
from utils.cli import run_cli
from utils.config import ConfigError, check_ranges, config_notes, get_args_parser, parse_config
from utils.device import resolve_device
from utils.distributed import launched_processes
from utils.engine.checkpoint import load_model_weights
from utils.engine.compiled import compiled
from utils.engine.loop import Evaluator
from utils.engine.paths import run_paths
from utils.engine.report import AR_KEYS, metrics_table, other_protocol, write_metrics_json
from utils.engine.run import make_loader, seed_everything, text_embeddings_for
from utils.engine.synthetic import build_dataset  # the embedded demo writes itself on first use
from utils.io import atomic_write_json, check_writable_location
from utils.logging import attach_log_file, close_logger, setup_logger


def main(argv=None) -> dict:
    logger = setup_logger()  # console now; `<model>_test.log` (appended to) once everything is validated
    cfg = parse_config(argv, get_args_parser("Evaluate a GAP checkpoint on the unseen classes"))
    check_ranges(cfg)
    if launched_processes() > 1:  # each process would evaluate everything and write the same files
        raise ConfigError(f"test.py runs as one process, not {launched_processes()} under torchrun: start it with "
                          "python test.py ...")
    paths = run_paths(cfg)
    device = resolve_device(cfg.device)
    check_writable_location(paths.results_dir, "--output_root")
    seed_everything(cfg.seed)

    dataset = build_dataset(cfg, "inference")
    loader = make_loader(dataset, cfg, train=False)
    text_encoder = build_text_encoder(cfg)
    text = text_embeddings_for(dataset, text_encoder)
    model = build_model(cfg)
    ckpt = Path(cfg.ckpt) if cfg.ckpt else paths.best
    if cfg.feature_type == "ViFi-CLIP":  # its scale is logit_scale.npy, not part of the checkpoint
        model.set_logit_scale(text_encoder.logit_scale)
    load_model_weights(model, ckpt)  # overwrites logit_scale with the checkpoint's value, as the original
    model.to(device)

    attach_log_file(paths.log.with_name(f"{cfg.model_name}_test.log"))
    for note in config_notes(cfg):
        logger.info(f"note: {note}")
    logger.info(f"evaluating {ckpt} on {len(dataset)} items ({len(dataset.ground_truth)} videos with ground "
                f"truth), classes {dataset.classes}")

    postprocessor = build_postprocessor(cfg)
    evaluator = Evaluator(dataset, loader, text, compiled(model, cfg.compile, device), postprocessor, device, cfg)
    metrics, other_metrics, merged = evaluator.evaluate_both_protocols()
    other = other_protocol(cfg.eval_videos)

    logger.info("\n" + metrics_table(metrics, f"{ckpt} (eval_videos={cfg.eval_videos})", ar_keys=AR_KEYS))
    logger.info(f"AUC {100 * metrics['AUC']:.2f}")
    logger.info("\n" + metrics_table(other_metrics, f"same detections, eval_videos={other}"))
    out = write_metrics_json(paths.test_metrics, metrics, checkpoint=str(ckpt),
                             **{f"eval_videos_{other}": other_metrics})
    logger.info(f"metrics written to {out}")
    if cfg.save_result:
        result_path = atomic_write_json(paths.detections(-1), evaluator.results_json(merged))
        logger.info(f"detections written to {result_path}")
    close_logger()
    return metrics


if __name__ == "__main__":
    sys.exit(run_cli(main))

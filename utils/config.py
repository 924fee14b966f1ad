"""Command-line flags, YAML merge and validation for main.py, test.py and the scripts.

Every flag of the original command line is here with the same name, type, choices and default, so the
paper's command lines parse verbatim. The flags added by this project are listed in `NEW_FLAGS`.

Precedence (a deliberate fix, see README "Configuration"): a flag given explicitly on the command line
beats the YAML file of `--cfg_path`, which beats the built-in default. The original let the YAML silently
override the command line (SPEC §1.1); the headline commands have no conflicts, so their numbers are
unchanged.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from utils.device import default_device
from utils.io import atomic_write_text


@dataclass(frozen=True)
class Flag:
    name: str
    default: Any
    type: type = str  # bool means a store_true switch
    choices: tuple | None = None
    help: str = ""
    nullable: bool = False  # None is a valid value (flags whose default is None)


def _flags_original() -> list[Flag]:
    """The original's options (SPEC §1.3), in its order."""
    return [
        Flag("cfg_path", None, str, help="YAML file merged over the defaults", nullable=True),
        Flag("model_name", None, str, help="names the log, checkpoint and result files", nullable=True),
        Flag("seed", 3552, int, help="seeds python, numpy and torch"),
        Flag("device", None, str, help="torch device; default cuda when available, else cpu", nullable=True),
        Flag("task", "zero_shot", str, ("zero_shot", "close_set"), "zero_shot uses the split lists"),
        Flag("target_type", "prompt", str, ("prompt", "description", "name", "none"), "text for each class"),
        Flag("eval_proposal", False, bool, help="evaluate class-agnostic proposals"),
        Flag("num_workers", None, int, help="DataLoader workers; default 1 on CUDA, 0 on CPU (the original: 1)",
             nullable=True),
        Flag("batch_size", 16, int, help="train and inference batch size per process (under torchrun the global "
             "batch is --nproc_per_node x --nnodes x this)"),
        Flag("dataset_name", "Thumos14", str, ("Thumos14", "ActivityNet13", "Synthetic"),
             "Synthetic = the embedded synthetic dataset (THUMOS14 format)"),
        Flag("num_classes", 20, int, help="total classes of the dataset"),
        Flag("split", 75, int, (75, 50), "75 -> train_75_test_25, 50 -> train_50_test_50"),
        Flag("split_id", 0, int, help="which split_<id>.list"),
        Flag("anno_file_path", "./data/Thumos14/Thumos14_annotations.json", str, help="annotation JSON"),
        Flag("feature_info_path", "./data/Thumos14/CLIP/Thumos14_info.json", str, help="feature info JSON"),
        Flag("description_file_path", "./data/Thumos14/Thumos14_description.json", str,
             help="class description JSON"),
        Flag("feature_path", "/mnt/Datasets/Thumos14/CLIP_feature", str, help="folder of <video>.npy"),
        Flag("feature_type", "CLIP", str, ("CLIP", "ViFi-CLIP"), "feature kind"),
        Flag("feature_stride", 16, int, help="frames per snippet"),
        Flag("rescale_length", 0, int, help="ActivityNet: resample every video to this length (0 = keep)"),
        Flag("slice_size", 128, int, help="THUMOS14 window length (snippets)"),
        Flag("slice_overlap", 0.75, float, help="THUMOS14 training window overlap"),
        Flag("inference_slice_overlap", 0.25, float, help="THUMOS14 inference window overlap"),
        Flag("hidden_dim", 512, int, help="model width; must equal the feature dimension"),
        Flag("enable_backbone", False, bool, help="apply the Conv1d backbone"),
        Flag("position_embedding", "sine", str, ("sine", "learned"), "position encoding"),
        Flag("backbone_layers", 1, int, help="Conv1d layers of the backbone"),
        Flag("dropout", 0.1, float, help="transformer dropout"),
        Flag("nheads", 8, int, help="attention heads"),
        Flag("dim_feedforward", 2048, int, help="FFN width"),
        Flag("enc_layers", 6, int, help="encoder depth"),
        Flag("dec_layers", 6, int, help="decoder depth"),
        Flag("pre_norm", False, bool, help="pre-norm transformer (decoder unsupported, as the original)"),
        Flag("CLIP_model_name", "ViT-B/16", str, help="CLIP model name or path to a local CLIP checkpoint"),
        Flag("num_queries", 15, int, help="number of queries"),
        Flag("norm_embed", False, bool, help="L2-normalise embeddings before the similarity"),
        Flag("exp_logit_scale", False, bool, help="use exp(logit_scale) as similarity scale"),
        Flag("ROIalign_size", 16, int, help="RoI-align bins"),
        Flag("enable_refine", False, bool, help="Static-Dynamic Rectifying (refine) module"),
        Flag("refine_drop_saResidual", False, bool, help="refine: no residual around self-attention"),
        Flag("refine_drop_sa", False, bool, help="refine: skip self-attention"),
        Flag("refine_fusion_type", "ca", str, ("ca", "mean", "max"), "refine fusion"),
        Flag("refine_cat_type", "sum", str, ("sum", "concat1", "concat2"), "refine combination"),
        Flag("enable_classAgnostic", False, bool, help="class-agnostic proposals + RoI CLIP classification"),
        Flag("enable_posPrior", False, bool, help="alternative query parametrisation"),
        Flag("refine_layer_num", 1, int, help="refine layers"),
        Flag("aux_loss", False, bool, help="accepted for compatibility; has no effect (as in the original)"),
        Flag("cls_loss_coef", 2, float, help="weight of loss_ce (not computed in class-agnostic mode)"),
        Flag("bbox_loss_coef", 5, float, help="weight of the L1 box loss"),
        Flag("giou_loss_coef", 2, float, help="weight of the (1-D plain) IoU loss"),
        Flag("focal_alpha", 0.25, float, help="focal loss alpha"),
        Flag("gamma", 2, float, help="focal loss gamma"),
        Flag("actionness_loss", False, bool, help="actionness head+loss outside class-agnostic mode"),
        Flag("actionness_loss_coef", 2, float, help="weight of loss_actionness"),
        Flag("salient_loss", False, bool, help="salient head + Action-aware Discrimination loss"),
        Flag("salient_loss_coef", 2, float, help="weight of loss_salient"),
        Flag("salient_loss_impl", "BCE", str, ("BCE", "CE"), "salient loss form (BCE is a focal BCE)"),
        Flag("set_cost_class", 2, float, help="matcher class cost"),
        Flag("set_cost_bbox", 5, float, help="matcher L1 cost"),
        Flag("set_cost_giou", 2, float, help="matcher IoU cost"),
        Flag("epochs", 100, int, help="training epochs"),
        Flag("lr_backbone", 1e-5, float, help="lr of parameters named *backbone*"),
        Flag("lr", 1e-4, float, help="lr of the other parameters"),
        Flag("weight_decay", 1e-4, float, help="AdamW weight decay"),
        Flag("lr_drop", 40, int, help="StepLR step (epochs)"),
        Flag("clip_max_norm", 0.1, float, help="gradient clipping norm"),
        Flag("postprocess_type", "class_agnostic", str, ("class_agnostic", "class_specific", "class_one"),
             "how detections are formed"),
        Flag("postprocess_topk", 100, int, help="detections per item"),
        Flag("save_result", False, bool, help="write the detections JSON at each evaluation"),
        Flag("test_interval", 1, int, help="evaluate every k epochs (-1 = never)"),
        Flag("ROIalign_strategy", "before_pred", str, ("before_pred", "after_pred"), "pool then compare, or not"),
        Flag("train_interval", -1, int, help="evaluate on the training set every k epochs (-1 = never)"),
        Flag("filter_threshold", 0, float, help="drop detections scoring below it (0 = off)"),
        Flag("proposals_weight_type", "before_softmax", str, ("before_softmax", "after_softmax"),
             "where actionness multiplies the class scores"),
        Flag("prob_type", "softmax", str, ("softmax", "sigmoid", "none_mul"), "class probability"),
        Flag("inference_entire", False, bool, help="THUMOS14: evaluate whole videos, no windows"),
        Flag("pooling_type", "average", str,
             ("average", "max", "center1", "center2", "self_attention", "slow_fast", "sparse"),
             "RoI pooling for classification"),
    ]


def _flags_new() -> list[Flag]:
    """Flags this project adds (the original has none of these)."""
    return [
        Flag("split_root", "./splits", str, help="folder holding train_75_test_25/ and train_50_test_50/"),
        Flag("text_embeddings", None, str, help="NPZ of class text embeddings (bypasses CLIP)", nullable=True),
        Flag("text_cache_dir", "~/.cache/gap_zstal/text", str,
             help="cache of computed text embeddings (empty string: no cache)"),
        Flag("clip_download_root", None, str, help="where CLIP model names are downloaded (default ~/.cache/clip)",
             nullable=True),
        Flag("amp", False, bool, help="mixed precision: float16 autocast on CUDA, bfloat16 on a CPU with native "
             "bfloat16 (avx512_bf16/amx); float32 with a warning on other CPUs"),
        Flag("compile", False, bool, help="run the model's forward through torch.compile (static shapes; meant for "
             "CUDA, not faster on a CPU); checkpoints stay plain state_dicts"),
        Flag("eval_videos", "gt", str, ("gt", "all"),
             "gt: the original (detections on videos without ground truth are dropped); all: they count"),
        Flag("resume", None, str, help="full-state checkpoint to resume training from", nullable=True),
        Flag("ckpt", None, str, help="test.py: checkpoint to evaluate (default ckpt/<ds>/best_<model>.pkl)",
             nullable=True),
        Flag("select_on", "test", str, ("test", "val", "last"),
             "model selection: test = the original (best unseen-class test mAP); val = held-out seen videos"),
        Flag("val_fraction", 0.2, float, help="select_on val: fraction of training videos held out"),
        Flag("output_root", ".", str, help="folder under which ckpt/, logs/, results/, runs/ are written"),
        Flag("overwrite", False, bool, help="main.py: replace an earlier run of this --model_name (its outputs are "
             "moved to <output_root>/overwritten/)"),
        Flag("debug", False, bool, help="show the full traceback of an error instead of one line"),
    ]


ORIGINAL_FLAGS = _flags_original()
NEW_FLAGS = _flags_new()
ALL_FLAGS = {flag.name: flag for flag in ORIGINAL_FLAGS + NEW_FLAGS}

# Flags the original accepts but that change nothing; a note is logged instead of silence.
INERT_FLAG_NOTES = {
    "aux_loss": "--aux_loss has no effect: the model produces no auxiliary outputs (as in the original).",
}


# Keys a saved configuration leaves out, and keys that may differ when a run is resumed: how the run
# executes, not what it computes (--compile changes numbers only within float rounding, like --device).
NOT_DUMPED = ("cfg_path", "resume", "overwrite", "debug")
RESUME_MAY_DIFFER = ("cfg_path", "resume", "device", "num_workers", "compile", "ckpt", "overwrite", "debug")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key and what was expected."""


def _type_name(flag: Flag) -> str:
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}[flag.type]


def get_args_parser(description: str = "GAP zero-shot temporal action localization") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, add_help=True)
    for flag in ALL_FLAGS.values():
        option = f"--{flag.name}"
        help_text = flag.help + (f" (default: {flag.default})" if flag.default not in (None, False) else "")
        if flag.type is bool:
            parser.add_argument(option, action="store_true", default=flag.default,
                                help=help_text + f" (off: --no-{flag.name} or --{flag.name} false)")
            parser.add_argument(f"--no-{flag.name}", dest=flag.name, action="store_false", help=argparse.SUPPRESS)
        else:
            parser.add_argument(option, type=flag.type, default=flag.default, choices=flag.choices,
                                help=help_text)
    return parser


def _explicit_keys(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Names of the flags given on the command line (their values beat the YAML)."""
    probe = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        kwargs = {"dest": action.dest}
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            kwargs["action"] = "store_true" if isinstance(action, argparse._StoreTrueAction) else "store_false"
        else:
            kwargs["type"] = action.type
        probe.add_argument(*action.option_strings, **kwargs)
    namespace, _ = probe.parse_known_args(argv)
    return set(vars(namespace))


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def normalise_bool_flags(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--<flag> false` -> `--no-<flag>` and `--<flag> true` -> `--<flag>` for the boolean switches, so that a
    switch a YAML turns on can be turned off on the command line. A following word that is not a boolean
    (true/false, yes/no, on/off, 1/0) is left alone, so `--save_result` keeps working before other tokens."""
    switches = {opt for action in parser._actions if isinstance(action, argparse._StoreTrueAction)
                for opt in action.option_strings}
    out: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, eq, inline = token.partition("=")
        word = inline if eq else (tokens[index + 1] if index + 1 < len(tokens) else None)
        if name in switches and word is not None and word.lower() in _BOOL_WORDS:
            out.append(name if _BOOL_WORDS[word.lower()] else "--no-" + name[2:])
            index += 1 if eq else 2
            continue
        if name in switches and eq:
            raise ConfigError(f"{name}: expected true or false, got {inline!r}")
        out.append(token)
        index += 1
    return out


def validate_value(key: str, value: Any, source: str) -> Any:
    """Check a value against the flag's type and choices; return it (ints accepted for floats)."""
    if key not in ALL_FLAGS:
        close = difflib.get_close_matches(key, ALL_FLAGS, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"{source}: unknown key '{key}'.{hint}")
    flag = ALL_FLAGS[key]
    if value is None:
        if flag.nullable:
            return None
        raise ConfigError(f"{source}: key '{key}' is null; expected {_type_name(flag)}")
    value = _number_from_text(flag, value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[flag.type]
    if not ok:
        raise ConfigError(f"{source}: key '{key}' has value {value!r} ({type(value).__name__}); "
                          f"expected {_type_name(flag)}")
    if flag.choices is not None and value not in flag.choices:
        raise ConfigError(f"{source}: key '{key}' has value {value!r}; expected one of {list(flag.choices)}")
    return value


def _number_from_text(flag: Flag, value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads `1e-4` (no dot) as a string: accept such a string as the number it spells."""
    if not isinstance(value, str) or flag.type not in (int, float):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if flag.type is int:
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else value
    return number


# Numeric ranges: flag -> (check, what is expected). Checked before a run writes anything.
RANGES = {
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "num_workers": (lambda v: v >= 0, ">= 0"),
    "lr": (lambda v: v > 0, "> 0 (a zero or negative learning rate trains nothing)"),
    "lr_backbone": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "lr_drop": (lambda v: v >= 1, ">= 1 (epochs between learning-rate drops)"),
    "clip_max_norm": (lambda v: v >= 0, ">= 0 (0 turns clipping off)"),
    "split_id": (lambda v: 0 <= v <= 9, "between 0 and 9 (the release's split_0..split_9 lists)"),
    "num_classes": (lambda v: v >= 1, ">= 1"),
    "feature_stride": (lambda v: v >= 1, ">= 1"),
    "rescale_length": (lambda v: v >= 0, ">= 0 (0 keeps each video's length)"),
    "slice_size": (lambda v: v >= 1, ">= 1"),
    "slice_overlap": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "inference_slice_overlap": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "hidden_dim": (lambda v: v >= 1, ">= 1"),
    "backbone_layers": (lambda v: v >= 1, ">= 1"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "nheads": (lambda v: v >= 1, ">= 1"),
    "dim_feedforward": (lambda v: v >= 1, ">= 1"),
    "enc_layers": (lambda v: v >= 0, ">= 0"),
    "dec_layers": (lambda v: v >= 1, ">= 1"),
    "num_queries": (lambda v: v >= 1, ">= 1"),
    "ROIalign_size": (lambda v: v >= 1, ">= 1"),
    "refine_layer_num": (lambda v: v >= 1, ">= 1"),
    "postprocess_topk": (lambda v: v >= 1, ">= 1"),
    "test_interval": (lambda v: v == -1 or v >= 1, "-1 (never) or >= 1"),
    "train_interval": (lambda v: v == -1 or v >= 1, "-1 (never) or >= 1"),
    "val_fraction": (lambda v: 0 < v < 1, "strictly between 0 and 1 (the fraction of training videos held out)"),
}


def check_ranges(cfg: argparse.Namespace, training: bool = False) -> None:
    """Every numeric flag within its range (`RANGES`); `training` adds main.py's own (--epochs >= 1)."""
    for key, (ok, expected) in RANGES.items():
        value = getattr(cfg, key, None)
        if value is not None and not ok(value):
            raise ConfigError(f"--{key} {value}: expected {expected}")
    if cfg.hidden_dim % cfg.nheads:
        raise ConfigError(f"--hidden_dim {cfg.hidden_dim} is not divisible by --nheads {cfg.nheads}; expected "
                          "hidden_dim = nheads x the width of one attention head")
    if training and cfg.epochs < 1:
        raise ConfigError(f"--epochs {cfg.epochs}: main.py trains at least one epoch (expected >= 1); to evaluate "
                          "a checkpoint without training use test.py --ckpt PATH")


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--cfg_path: config file {path} does not exist")
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from error
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not a text (UTF-8) YAML file ({error.reason})") from error
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected flag names with values (e.g. 'lr: 1.0e-4'), "
                          "or leave out --cfg_path to run with the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values, got {type(data).__name__}")
    return {key: validate_value(str(key), value, str(path)) for key, value in data.items()}


def _finalise(cfg: argparse.Namespace) -> argparse.Namespace:
    if cfg.device is None:
        cfg.device = default_device()
    if cfg.num_workers is None:
        # on CPU the main process loads: a batch is ~13 ms of memory-mapped slices (under 1% of an iteration)
        # and a worker process would take a core from torch's threads; on CUDA one worker overlaps loading
        cfg.num_workers = 1 if str(cfg.device).startswith("cuda") else 0
    return cfg


def parse_config(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None,
                 ) -> argparse.Namespace:
    """Parse the command line, merge `--cfg_path`; precedence: explicit flag > YAML > default.

    `parser` may be a parser built by `get_args_parser()` with script-specific flags added.
    """
    parser = parser or get_args_parser()
    parser.error = _raise_usage_error  # one clear line (exit status 1 via run_cli), not usage + exit 2
    argv = normalise_bool_flags(sys.argv[1:] if argv is None else argv, parser)
    cfg = parser.parse_args(argv)
    if cfg.cfg_path:
        explicit = _explicit_keys(parser, argv)
        for key, value in read_yaml_config(cfg.cfg_path).items():
            if key not in explicit and key != "cfg_path":
                setattr(cfg, key, value)
    return _finalise(cfg)


def _raise_usage_error(message: str):
    raise ConfigError(message)


def default_config(**overrides: Any) -> argparse.Namespace:
    """All defaults with `overrides` applied (validated); for tests and scripts."""
    cfg = argparse.Namespace(**{name: flag.default for name, flag in ALL_FLAGS.items()})
    for key, value in overrides.items():
        setattr(cfg, key, validate_value(key, value, "default_config()"))
    return _finalise(cfg)


def config_to_dict(cfg: argparse.Namespace) -> dict[str, Any]:
    """The known flags of `cfg`, in definition order (script-only extras are left out)."""
    return {name: getattr(cfg, name) for name in ALL_FLAGS if hasattr(cfg, name)}


def dump_config(cfg: argparse.Namespace, path: str | Path) -> Path:
    """Write the resolved configuration as YAML; `--cfg_path` of that file gives the same run.

    `resume` is left out: resuming is a way of running, not part of the run (with it, re-running the saved
    file would only reload the final state).
    """
    values = config_to_dict(cfg)
    for key in NOT_DUMPED:
        values.pop(key, None)
    header = "# Resolved configuration (gap-zstal). Re-run with: python main.py --cfg_path <this file>\n"
    return atomic_write_text(path, header + yaml.safe_dump(values, sort_keys=False))


def config_differences(saved: dict[str, Any], current: argparse.Namespace,
                       ignore: Sequence[str] = RESUME_MAY_DIFFER) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between a saved configuration dict and `current`: key -> (saved, current)."""
    now = config_to_dict(current)
    return {key: (saved[key], now[key]) for key in now
            if key in saved and key not in ignore and saved[key] != now[key]}


def load_config(path: str | Path) -> argparse.Namespace:
    """Defaults merged with a YAML file (no command line)."""
    return parse_config(["--cfg_path", str(path)])


def config_notes(cfg: argparse.Namespace) -> list[str]:
    """One-line notes on flags that are accepted but inert, for the run log."""
    notes = [note for key, note in INERT_FLAG_NOTES.items() if getattr(cfg, key, False)]
    if cfg.enable_classAgnostic and cfg.cls_loss_coef != 2:
        notes.append("--cls_loss_coef has no effect with --enable_classAgnostic (loss_ce is never computed).")
    return notes

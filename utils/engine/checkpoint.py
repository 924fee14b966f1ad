"""Checkpoints: plain state_dicts (interchangeable with the authors' releases) and full training states.

`best_/last_<model>.pkl` are plain `model.state_dict()` files exactly like the original's, so released
checkpoints and ours load the same way. `state_<model>.pt` adds everything needed to resume a run.
All files are written atomically: a kill mid-write leaves the previous file intact.

Every file is read with `torch.load(weights_only=True)`: loading never runs code from the file (a plain
pickle or a crafted checkpoint is refused with a clear error). The training state therefore holds only
tensors, numbers, strings, lists and dicts (RNG states are converted, see `rng_states`).
"""
from __future__ import annotations

import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.io import atomic_torch_save


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit the model the flags build."""


def save_state_dict(model: torch.nn.Module, path: str | Path) -> Path:
    return atomic_torch_save(model.state_dict(), path)


def plain(value: Any) -> Any:
    """`value` with numpy arrays/scalars and tuples turned into lists and Python numbers, recursively, so that
    `torch.load(weights_only=True)` can read it back."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values (numpy's key array as a tensor)."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    states = {"python": [version, list(internal), gauss],
              "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_training_state(path: str | Path, **state: Any) -> Path:
    """Full state for `--resume` (model, optimizer, scheduler, epoch, best metrics and best weights, RNG
    states, config), in plain types only."""
    return atomic_torch_save({**plain(state), "rng": rng_states()}, path)


STATE_KEYS = {"model", "optimizer", "scheduler", "epoch", "rng"}


def safe_load(path: str | Path, flag: str) -> Any:
    """`torch.load(weights_only=True)` of `path` onto the CPU; any failure is a CheckpointError naming `flag`
    and the file (missing, truncated, not a torch file, or a pickle that would need to run code)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{flag}: {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{flag}: {path} is a folder, expected a checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{flag}: {path} {_what_it_is(path)}") from error
    except Exception as error:  # noqa: BLE001 - whatever torch raises on a damaged or foreign file
        raise CheckpointError(f"{flag}: {path} is not a readable torch checkpoint ({path.stat().st_size} bytes): "
                              "truncated (e.g. an interrupted copy) or another kind of file") from error


def _what_it_is(path: Path) -> str:
    """Why the weights-only loader refused `path`, from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if zipfile.is_zipfile(path):
        return ("holds Python objects that only running their code could rebuild; refused (loading a "
                "checkpoint never runs code from the file): expected a state_dict of tensors or a state_<model>.pt "
                "of this project")
    if head[:1] == b"\x80":
        return ("is a plain pickle, not a torch.save() checkpoint; refused (unpickling can run code): save "
                "the weights with torch.save(model.state_dict(), path)")
    return "is not a torch checkpoint (neither a torch.save() archive nor a pickle)"


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume: {path} does not exist (expected ckpt/<dataset>/state_<model_name>.pt)")
    state = safe_load(path, "--resume")
    missing = STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS
    if missing:
        raise CheckpointError(f"--resume: {path} is not a full training state (missing {sorted(missing)}); "
                              "plain best_/last_*.pkl files hold weights only")
    return state


def read_state_dict(path: str | Path, flag: str = "--ckpt") -> dict[str, torch.Tensor]:
    """Read a plain state_dict saved on any device onto the CPU (CUDA checkpoints load without a GPU)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; train first with main.py (same --model_name "
                              "and --cfg_path) or pass --ckpt PATH")
    state = safe_load(path, flag)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a full training state: take its weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{flag}: {path} holds a {type(state).__name__} that is not a state_dict (expected "
                              "parameter names -> tensors)")
    return state


# Parameter name pattern -> the flag that decides its presence or shape.
_FLAG_HINTS = [
    (r"^query_embed\.weight$", "--num_queries (first dim) / --hidden_dim / --enable_posPrior"),
    (r"^transformer\.encoder\.layers\.(\d+)\.", "--enc_layers"),
    (r"^transformer\.decoder\.layers\.(\d+)\.", "--dec_layers"),
    (r"^refine_decoder\.layers\.(\d+)\.", "--enable_refine / --refine_layer_num / --refine_cat_type"),
    (r"^refine_decoder\.", "--enable_refine / --refine_cat_type"),
    (r"^salient_head\.", "--salient_loss"),
    (r"^backbone\.0\.layers\.(\d+)\.", "--backbone_layers"),
    (r"^backbone\.1\.", "--position_embedding"),
    (r"^actionness_embed\.", "--enable_classAgnostic / --actionness_loss"),
    (r"^class_embed\.", "--target_type / --num_classes / --enable_classAgnostic"),
    (r"^transformer\.decoder\.ref_point_head\.", "--enable_posPrior"),
    (r"dim_feedforward|linear1|linear2", "--dim_feedforward"),
]


def _hint(name: str) -> str:
    for pattern, flags in _FLAG_HINTS:
        if re.search(pattern, name):
            return flags
    return "--hidden_dim"


def describe_mismatch(model_state: dict[str, torch.Tensor], ckpt_state: dict[str, torch.Tensor]) -> str:
    """Explain which keys/shapes differ and which flags probably differ between checkpoint and command."""
    missing = [k for k in model_state if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    shapes = [(k, tuple(ckpt_state[k].shape), tuple(model_state[k].shape)) for k in model_state
              if k in ckpt_state and tuple(ckpt_state[k].shape) != tuple(model_state[k].shape)]
    lines, flags = [], []
    for label, names in (("missing in the checkpoint", missing), ("not built by these flags", unexpected)):
        if names:
            lines.append(f"{len(names)} parameter(s) {label}, e.g. {', '.join(names[:4])}")
            flags += [_hint(n) for n in names]
    for name, have, want in shapes[:6]:
        lines.append(f"shape of {name}: checkpoint {have} vs model {want}")
    flags += [_hint(name) for name, _, _ in shapes]
    if shapes and any(n.endswith("input_proj.weight") for n, _, _ in shapes):
        flags.append("--hidden_dim")
    unique_flags = list(dict.fromkeys(flags))
    lines.append("flags that probably differ from the run that saved it: " + "; ".join(unique_flags))
    return "\n  ".join(lines)


def load_weights(model: torch.nn.Module, ckpt_state: dict, source: str) -> None:
    """Strict load of `ckpt_state` (from `source`, for the message), explaining a mismatch with the flags."""
    model_state = model.state_dict()
    if set(model_state) != set(ckpt_state) or any(
            tuple(model_state[k].shape) != tuple(ckpt_state[k].shape) for k in model_state):
        raise CheckpointError(f"checkpoint {source} does not fit the model built by these flags:\n  "
                              + describe_mismatch(model_state, ckpt_state))
    model.load_state_dict(ckpt_state, strict=True)


def load_model_weights(model: torch.nn.Module, path: str | Path, flag: str = "--ckpt") -> None:
    """Strict load of a plain or full-state checkpoint, with an explanation when it does not fit."""
    load_weights(model, read_state_dict(path, flag), str(path))

"""`--compile`: the model's forward through `torch.compile`, the one place every entry point gets it from.

What is compiled: the module's forward only (the model, or the DDP wrapper that trains it). The criterion
stays eager: its Hungarian matching runs scipy on the CPU, which TorchDynamo could not trace anyway.

Static shapes (`dynamic=False`): training windows are fixed-size and the last partial batch is dropped, so
training compiles one graph; inference compiles one for full batches and one more for the last short
batch (ActivityNet items are rescaled to `--rescale_length`, so the same holds). Each shape is
specialised, as fast as a compiled graph gets; a dynamic-shape graph would only save those one or two
extra compilations. With variable-length items (`--rescale_length 0`, `--inference_entire`) every new
length recompiles, and past torch's recompile limit that shape runs eagerly (torch warns).

Under torchrun the DistributedDataParallel wrapper is compiled (DDP first, then compile: torch's
documented order, so that TorchDynamo's DDP optimizer splits the graph at the gradient buckets and
all-reduce overlaps the backward); the predicting model is compiled on its own.

Checkpoints stay plain: `torch.compile` returns a wrapper (`OptimizedModule`, whose own state_dict would
prefix every name with `_orig_mod.`) that shares the parameters of the module it wraps. Callers keep the
plain module for `state_dict`, `load_state_dict`, `named_parameters` and the optimizer, and call the
wrapper only to run the model; so `best_/last_*.pkl` and state files are the same with and without
`--compile` and load either way.
"""
from __future__ import annotations

import torch

from utils.logging import get_logger

_cpu_note_logged = False  # the CPU note once per process, not once per compiled module


def compiled(module: torch.nn.Module, enabled: bool, device: torch.device | str | None = None,
             backend: str = "inductor") -> torch.nn.Module:
    """`torch.compile(module, dynamic=False)` when `enabled` (see the module docstring), else `module`
    itself. On a CPU one line says that the compiled model is not expected to be faster there. `backend`:
    torch.compile's (the runs use inductor; "aot_eager" traces the same graphs without generating code)."""
    global _cpu_note_logged
    if not enabled:
        return module
    if device is not None and torch.device(device).type == "cpu" and not _cpu_note_logged:
        _cpu_note_logged = True
        get_logger().info("--compile: meant for CUDA, where it removes kernel-launch overhead; on a CPU compiling "
                          "takes minutes (about 3 for the headline model on a 2-core Xeon) and the compiled model is "
                          "not reliably faster than eager (README, Fidelity and speed)")
    return torch.compile(module, dynamic=False, backend=backend)


def run_modules(model: torch.nn.Module, train_model: torch.nn.Module, enabled: bool,
                device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(module that trains, module that predicts) of a run: `train_model` is `model` itself in a single
    process or its DDP wrapper under torchrun. Without `enabled` both are returned unchanged."""
    trains = compiled(train_model, enabled, device)
    predicts = trains if train_model is model else compiled(model, enabled, device)
    return trains, predicts

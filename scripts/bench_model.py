"""Time one training iteration (forward + losses + backward) of the full-size model.

    python scripts/bench_model.py                 # THUMOS14 headline shape, float32 and --amp, CPU (+ CUDA)
    python scripts/bench_model.py --dataset anet  # ActivityNet headline shape (T=300, Q=30, dec 2, backbone)
    python scripts/bench_model.py --iters 5 --devices cpu --modes fp32
    python scripts/bench_model.py --devices cuda --modes fp32 amp compile compile_amp   # README's GPU rows

Shape (THUMOS14 headline): batch 16, 128 snippets, 512-d, 40 queries, 2 encoder / 5 decoder layers, refine,
salient head, dropout 0.1, train mode. The FLOP count of one iteration is measured with
torch.utils.flop_counter (matrix products, convolutions, attention) and divided by the median time.
`--amp` = bfloat16 autocast on CPU, float16 (or --cuda_dtype bfloat16) on CUDA; losses in float32.
`compile` / `compile_amp`: the model's forward through torch.compile as `main.py --compile` runs it
(utils/engine/compiled.py); the first call (compiling forward and backward, plus that one iteration) is
printed apart from the steady iterations, which are timed after `--warmup` more calls.
Other processes on the machine change the numbers: the load average is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.build import build_criterion, build_model  # noqa: E402
from scripts.headline_flags import HEADLINE_MODEL_FLAGS  # noqa: E402
from utils.config import default_config  # noqa: E402
from utils.cpu import cpu_description, native_cpu_bfloat16  # noqa: E402
from utils.engine.compiled import compiled  # noqa: E402

LENGTH = {"thumos14": 128, "anet": 300}


def synthetic_batch(batch: int, length: int, channels: int, device: torch.device, seed: int = 0):
    """Random features and 1-3 random segments per item (with salient masks), a few items padded."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, length, channels, generator=gen)
    lengths = torch.full((batch,), length)
    lengths[-2:] = torch.tensor([length * 3 // 4, length // 2])
    mask = torch.arange(length)[None] >= lengths[:, None]
    features = features.masked_fill(mask[..., None], 0.0)
    targets = []
    for b in range(batch):
        n = int(torch.randint(1, 4, (1,), generator=gen))
        start = torch.rand(n, generator=gen) * 0.7
        width = 0.05 + torch.rand(n, generator=gen) * 0.25
        segments = torch.stack((start + width / 2, width), dim=1)
        steps = torch.arange(int(lengths[b])) / float(lengths[b])
        salient_mask = ~((steps[None] >= start[:, None]) & (steps[None] <= (start + width)[:, None]))
        targets.append({"segments": segments.to(device),
                        "labels": torch.zeros(n, dtype=torch.int64, device=device),
                        "salient_mask": salient_mask.to(device)})
    return features.to(device), mask.to(device), targets


def autocast(device: torch.device, amp: bool, cuda_dtype: torch.dtype):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=cuda_dtype if device.type == "cuda" else torch.bfloat16)


def iteration(model, criterion, batch, device, amp, cuda_dtype):
    features, mask, targets = batch
    with autocast(device, amp, cuda_dtype):
        outputs = model(features, mask)
    losses = criterion(outputs, targets)
    total = criterion.weighted_total(losses)
    model.zero_grad(set_to_none=True)
    total.backward()
    return total


def build_headline(dataset: str, device: torch.device, batch_size: int, length: int | None = None, **overrides):
    """(cfg, model in train mode, criterion, synthetic batch) of the dataset's headline configuration;
    `overrides` change flags (e.g. a smaller hidden_dim for quick runs)."""
    torch.manual_seed(0)
    cfg = default_config(**{**HEADLINE_MODEL_FLAGS[dataset], **overrides})
    model = build_model(cfg).to(device).train()
    criterion = build_criterion(cfg)
    batch = synthetic_batch(batch_size, length or LENGTH[dataset], cfg.hidden_dim, device)
    return cfg, model, criterion, batch


def counted_flops(call) -> float:
    """FLOPs of one `call()` (matrix products, convolutions, attention), by torch's flop counter."""
    with FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


def time_calls(call, iters: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of `iters` calls after `warmup` untimed ones (CUDA synchronised)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times


MODES = ("fp32", "amp", "compile", "compile_amp")
AMP_MODES = ("amp", "compile_amp")
COMPILED_MODES = ("compile", "compile_amp")


def bench(dataset: str, device: torch.device, mode: str, iters: int, warmup: int, cuda_dtype: torch.dtype,
          batch_size: int) -> dict:
    cfg, model, criterion, batch = build_headline(dataset, device, batch_size)
    amp = mode in AMP_MODES
    # FLOPs of the eager iteration (the compiled one computes the same products)
    flops = counted_flops(lambda: iteration(model, criterion, batch, device, amp, cuda_dtype))
    runs = compiled(model, mode in COMPILED_MODES)

    def call():
        return iteration(runs, criterion, batch, device, amp, cuda_dtype)

    first = time_calls(call, 1, 0, device)[0] if runs is not model else None  # compiles forward and backward
    times = time_calls(call, iters, warmup, device)
    median = statistics.median(times)
    return {"median": median, "min": min(times), "gflop": flops / 1e9, "gflops": flops / 1e9 / median,
            "first_call": first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(HEADLINE_MODEL_FLAGS), default="thumos14")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["fp32", "amp"],
                        help="compile / compile_amp: torch.compile, as main.py --compile (meant for CUDA; on a CPU "
                             "compiling the headline model takes minutes and is not faster)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--cuda_dtype", choices=("float16", "bfloat16"), default="float16")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load:.2f}, "
          f"{args.dataset} shape: batch {args.batch_size}, T {LENGTH[args.dataset]}")
    print(f"CPU: {cpu_description()}")
    for device_name in devices:
        device = torch.device(device_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        for mode in args.modes:
            amp = mode in AMP_MODES
            if amp and device.type == "cpu" and not native_cpu_bfloat16():
                print(f"{label:>10}  bfloat16: skipped, this CPU has no native bfloat16 (main.py --amp runs "
                      f"float32 here): {cpu_description()}")
                continue
            result = bench(args.dataset, device, mode, args.iters, args.warmup,
                           getattr(torch, args.cuda_dtype), args.batch_size)
            precision = "float32" if not amp else ("bfloat16" if device.type == "cpu" else args.cuda_dtype)
            precision += " compiled" if mode in COMPILED_MODES else ""
            first = ("" if result["first_call"] is None
                     else f"; first call (compiling) {result['first_call']:.1f} s")
            print(f"{label:>10} {precision:>18}: {result['median']:.3f} s/iter (min {result['min']:.3f}), "
                  f"{result['gflop']:.1f} GFLOP/iter, {result['gflops']:.1f} GFLOP/s{first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

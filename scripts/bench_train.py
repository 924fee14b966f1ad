"""Where the training loop's time goes, as ratios measured in one run on the machine at hand.

    python scripts/bench_train.py              # THUMOS14 headline shape (batch 16, T 128, 512-d, 40 queries)
    python scripts/bench_train.py --quick      # tiny shapes, a few iterations (what the test runs)

Measures, in this order:
1. the machine's matrix-product throughput: square matmuls in float32, and bfloat16 / float16 where the
   hardware computes them natively (CPU flags avx512_bf16/amx_bf16, avx512_fp16/amx_fp16; always on CUDA);
2. the model-only iteration: `utils.engine.loop.train_step` (forward + losses + backward + clipping + AdamW step)
   on one prepared batch, its FLOPs counted by torch's flop counter. Each timed iteration is paired with a
   square matmul timed just before it, and the ratio is the median of the pairs' ratios: on a shared or
   throttled machine the matmul speed drifts by tens of percent within a minute, which would otherwise be
   read as the model's efficiency;
2b. the iteration's own matrix products alone: every mm/addmm/bmm call of one iteration is recorded (shape,
   strides, dtype) and replayed in isolation, which tells how fast the step could be if it did nothing else
   (the matrix products of a training step are smaller and more often transposed than the square peak's);
3. `main.py` itself for one epoch on a generated THUMOS14-shaped synthetic dataset (512-d features,
   128-snippet windows, the headline flags): the training epoch (data loading, the loop, logging) and the
   test pass (inference, post-processing, window fusion, both evaluation protocols), each timed around
   main.py's own functions; during the test pass the model's forward calls alone are timed as well.
Ratios printed: model-only float32 GFLOP/s / matmul float32 GFLOP/s, main.py training iteration /
model-only iteration, test pass / its forward-only cost. Absolute seconds depend on the CPU (its features
are printed) and on other processes (the load average is printed); the ratios are what should hold.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import main as train_main  # noqa: E402
from scripts.bench_model import build_headline, counted_flops, time_calls  # noqa: E402
from scripts.headline_flags import HEADLINE_MODEL_FLAGS  # noqa: E402
from utils.cpu import cpu_description, cpu_flags, native_cpu_bfloat16  # noqa: E402
from utils.engine.loop import train_step  # noqa: E402
from utils.engine.optim import build_optimization  # noqa: E402
from utils.engine.synthetic import ensure_synthetic_dataset  # noqa: E402

# Full size: THUMOS14's shape and about its window counts (1200 training windows, 1758 test windows).
FULL = dict(matmul=2048, batch_size=16, iters=5, warmup=2, model={},
            data=dict(num_classes=20, num_train_videos=105, num_test_videos=170, min_length=700, max_length=1300,
                      feature_dim=512))
QUICK = dict(matmul=256, batch_size=4, iters=2, warmup=1,
             model=dict(hidden_dim=32, dim_feedforward=64, nheads=4, num_queries=10, enc_layers=1, dec_layers=2),
             data=dict(num_classes=8, num_train_videos=16, num_test_videos=12, min_length=120, max_length=260,
                       feature_dim=32))
DEMO_DATA_KEYS = ("task", "target_type", "dataset_name", "feature_stride", "feature_type", "split", "split_id",
                  "anno_file_path", "feature_info_path", "description_file_path", "feature_path", "split_root",
                  "text_embeddings")
DEMO_PATH_KEYS = ("anno_file_path", "feature_info_path", "description_file_path", "feature_path", "split_root",
                  "text_embeddings")


def matmul_gflops(size: int, dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """Best GFLOP/s of a [size x size] @ [size x size] product (2 size^3 FLOPs)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    times = time_calls(lambda: torch.mm(a, b), repeats, 2, device)
    return 2 * size ** 3 / min(times) / 1e9


def native_dtypes(device: torch.device) -> list[torch.dtype]:
    """The reduced precisions the hardware multiplies natively (others are emulated, so not the machine's)."""
    if device.type == "cuda":
        return [torch.bfloat16, torch.float16]
    flags = cpu_flags()
    return ([torch.bfloat16] if native_cpu_bfloat16() else []) + \
        ([torch.float16] if {"avx512_fp16", "amx_fp16"} & flags else [])


def model_only(sizes: dict, device: torch.device) -> dict:
    """Median seconds and GFLOP/s of train_step on one prepared headline batch (float32), each timed iteration
    paired with a square float32 matmul timed just before it (`peak_ratio`: median of the pairs' ratios);
    `products`: the iteration's matrix products replayed alone."""
    cfg, model, criterion, (features, mask, targets) = build_headline("thumos14", device, sizes["batch_size"],
                                                                      **sizes["model"])
    optimizer, _ = build_optimization(model, cfg)

    def step():
        train_step(model, criterion, optimizer, features, mask, targets, cfg.clip_max_norm)

    flops = counted_flops(step)
    with RecordedProducts() as recorded:
        step()
    seconds, ratios = [], []
    for iteration in range(sizes["warmup"] + sizes["iters"]):
        peak = matmul_gflops(sizes["matmul"], torch.float32, device, repeats=1)
        (elapsed,) = time_calls(step, 1, 0, device)
        if iteration >= sizes["warmup"]:
            seconds.append(elapsed)
            ratios.append(flops / 1e9 / elapsed / peak)
    median = statistics.median(seconds)
    return {"seconds": median, "gflop": flops / 1e9, "gflops": flops / 1e9 / median,
            "peak_ratio": statistics.median(ratios), "products": recorded.replay(device)}


class RecordedProducts(TorchDispatchMode):
    """Records every matrix-product call (mm, addmm, bmm: shapes, strides, dtypes, scalars) made inside it;
    `replay()` times them again in isolation: each distinct call as many times as it was made, back to back
    (median of 3 such runs)."""

    OPS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default)

    def __init__(self):
        super().__init__()
        self.calls: dict[tuple, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.OPS:
            specs = tuple((tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
            signature = (func, specs, tuple(sorted(kwargs.items())))
            self.calls[signature] = self.calls.get(signature, 0) + 1
        return func(*args, **kwargs)

    def replay(self, device: torch.device) -> dict:
        total_seconds = total_flops = 0.0
        for (func, specs, kwargs), count in self.calls.items():
            args = [torch.empty_strided(a[0], a[1], dtype=a[2], device=device).normal_() if isinstance(a, tuple) else a
                    for a in specs]

            calls = functools.partial(_repeat, func, args, dict(kwargs), count)
            total_seconds += statistics.median(time_calls(calls, 3, 1, device))
            total_flops += counted_flops(calls)
        return {"calls": sum(self.calls.values()), "seconds": total_seconds, "gflop": total_flops / 1e9}


def _repeat(func, args: list, kwargs: dict, count: int) -> None:
    for _ in range(count):  # back to back, so that no call pays alone for waking the BLAS threads
        func(*args, **kwargs)


@contextlib.contextmanager
def timed_main_functions(record: dict):
    """Time main.py's train_one_epoch and evaluate_test_set, and the model's forward calls inside the latter."""
    original_train, original_eval = train_main.train_one_epoch, train_main.evaluate_test_set

    def train_one_epoch(model, criterion, loader, *args, **kwargs):
        starts = []  # when each iteration's forward began: iteration k lasts starts[k] .. starts[k + 1]
        handle = model.register_forward_pre_hook(lambda module, inputs: starts.append(time.perf_counter()))
        start = time.perf_counter()
        try:
            result = original_train(model, criterion, loader, *args, **kwargs)
        finally:
            end = time.perf_counter()
            handle.remove()
        record["train_seconds"] = end - start
        record["train_iterations"] = len(loader)
        spans = [b - a for a, b in zip(starts, starts[1:] + [end])]
        record["first_iteration"] = spans[0]
        record["steady_iteration"] = statistics.median(spans[1:] or spans)
        return result

    def evaluate_test_set(cfg, epoch, evaluator, *args, **kwargs):
        model = evaluator.model
        forward_seconds = []
        # CUDA runs asynchronously: wait for the GPU at both ends of each forward call
        sync = torch.cuda.synchronize if str(cfg.device).startswith("cuda") else (lambda: None)

        def before(module, inputs):
            sync()
            forward_seconds.append(-time.perf_counter())

        def after(module, inputs, outputs):
            sync()
            forward_seconds[-1] += time.perf_counter()

        handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
        start = time.perf_counter()
        try:
            result = original_eval(cfg, epoch, evaluator, *args, **kwargs)
        finally:
            record["test_seconds"] = time.perf_counter() - start
            for handle in handles:
                handle.remove()
        record["forward_seconds"] = sum(forward_seconds)
        record["test_batches"] = len(forward_seconds)
        return result

    train_main.train_one_epoch, train_main.evaluate_test_set = train_one_epoch, evaluate_test_set
    try:
        yield record
    finally:
        train_main.train_one_epoch, train_main.evaluate_test_set = original_train, original_eval


def main_py_epoch(sizes: dict, device: torch.device, work: Path, num_workers: int | None) -> dict:
    """One epoch of main.py (training + test pass) on a generated THUMOS14-shaped dataset."""
    data = ensure_synthetic_dataset(work / "Synthetic", seed=0, **sizes["data"])
    demo = yaml.safe_load((REPO_ROOT / "config" / "demo.yaml").read_text())
    values = {key: demo[key] for key in DEMO_DATA_KEYS}  # the dataset of demo.yaml; every model flag headline
    for key in DEMO_PATH_KEYS:
        values[key] = str(data / Path(values[key]).relative_to("data/Synthetic"))
    values.update(HEADLINE_MODEL_FLAGS["thumos14"], **sizes["model"], num_classes=sizes["data"]["num_classes"],
                  batch_size=sizes["batch_size"], epochs=1, lr=1e-4, device=device.type, text_cache_dir="")
    if num_workers is not None:  # otherwise main.py's default
        values["num_workers"] = num_workers
    cfg_path = work / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(values))
    record: dict = {}
    console = work / "main_py_console.txt"  # main.py's console output (log lines, progress bars) goes here
    with open(console, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            timed_main_functions(record):
        train_main.main(["--cfg_path", str(cfg_path), "--model_name", "bench", "--output_root", str(work / "out")])
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few iterations (a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="main.py's --num_workers for the epoch (default: main.py's default)")
    parser.add_argument("--data_fraction", type=float, default=1.0,
                        help="generate this fraction of the videos (shapes unchanged; fewer iterations per epoch)")
    parser.add_argument("--work_dir", default=None,
                        help="where the dataset and main.py's outputs go (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    if not 0 < args.data_fraction <= 1:
        parser.error("--data_fraction: expected a fraction in (0, 1]")
    if args.data_fraction < 1:
        data = {**sizes["data"], **{key: max(2, round(sizes["data"][key] * args.data_fraction))
                                    for key in ("num_train_videos", "num_test_videos")}}
        sizes = {**sizes, "data": data}
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load:.2f}")
    print(f"CPU: {cpu_description()}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")

    peak = {}
    for dtype in [torch.float32] + native_dtypes(device):
        peak[dtype] = matmul_gflops(sizes["matmul"], dtype, device)
        print(f"matmul {sizes['matmul']}x{sizes['matmul']} {str(dtype).replace('torch.', ''):>8}: "
              f"{peak[dtype]:.1f} GFLOP/s")

    model = model_only(sizes, device)
    products = model["products"]
    print(f"model-only iteration (forward + losses + backward + step, float32, batch {sizes['batch_size']}): "
          f"{model['seconds']:.3f} s/iteration, {model['gflop']:.1f} GFLOP, {model['gflops']:.1f} GFLOP/s")
    print(f"its {products['calls']} matrix products replayed alone: {products['seconds']:.3f} s, "
          f"{products['gflop']:.1f} GFLOP, {products['gflop'] / products['seconds']:.1f} GFLOP/s")

    with contextlib.ExitStack() as stack:
        work = Path(args.work_dir) if args.work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        record = main_py_epoch(sizes, device, work, args.num_workers)
    train_iteration = record["train_seconds"] / record["train_iterations"]
    print(f"main.py training epoch: {record['train_seconds']:.1f} s for {record['train_iterations']} iterations, "
          f"{train_iteration:.3f} s/iteration (first {record['first_iteration']:.3f} s, then median "
          f"{record['steady_iteration']:.3f} s)")
    print(f"main.py test pass: {record['test_seconds']:.1f} s for {record['test_batches']} batches "
          f"(forward-only {record['forward_seconds']:.1f} s)")
    after = matmul_gflops(sizes["matmul"], torch.float32, device)
    drift = after / peak[torch.float32] - 1
    warning = "; the machine changed speed during the run: repeat it" if abs(drift) > 0.1 else ""
    print(f"matmul {sizes['matmul']}x{sizes['matmul']}  float32 again at the end: {after:.1f} GFLOP/s "
          f"({drift:+.0%} against the start{warning})")

    print("ratios (targets: >= 0.80, <= 1.10, <= 1.20):")
    print(f"  model-only GFLOP/s / matmul float32 GFLOP/s: {model['peak_ratio']:.2f} (median of "
          f"{sizes['iters']} iterations, each against a matmul timed just before it)")
    print("  (not targets) its matrix products alone / matmul float32 GFLOP/s: "
          f"{products['gflop'] / products['seconds'] / peak[torch.float32]:.2f}; model-only iteration / its "
          f"matrix products alone: {model['seconds'] / products['seconds']:.2f}")
    print(f"  main.py training iteration / model-only iteration: {train_iteration / model['seconds']:.2f} "
          f"(after the first: {record['steady_iteration'] / model['seconds']:.2f})")
    print(f"  main.py test pass / forward-only: {record['test_seconds'] / record['forward_seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The GPU checks of issue 15 as one prepared run, for a machine with one NVIDIA GPU (and torch on `python3`):
# the CUDA tests, float32 / AMP / compiled timings side by side, bench_train.py's ratios on CUDA, and a short
# main.py run under torchrun with NCCL. Each step writes one text file; a failing step does not stop the others.
#
#     bash scripts/gpu_check.sh [OUT_DIR]     # default: $OUT if set, else gpu_check/
#
# Needs the packages of requirements.txt besides torch (missing ones are listed in machine.txt) and about
# 10 minutes on an H200, most of it compiling.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

{
  nvidia-smi
  "$python" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name())"
  "$python" -c "import importlib.util as u; missing = [m for m in ('scipy', 'yaml', 'tqdm', 'pandas', 'submitit',
      'tensorboard', 'clip') if u.find_spec(m) is None]; print('missing packages:', missing or 'none')"
} > "$out/machine.txt" 2>&1

"$python" -m pytest -q tests/test_model_cuda.py > "$out/cuda_tests.txt" 2>&1
"$python" scripts/bench_model.py --devices cuda --modes fp32 amp compile compile_amp > "$out/bench_model.txt" 2>&1
"$python" scripts/bench_train.py --device cuda --data_fraction 0.2 > "$out/bench_train.txt" 2>&1
# NCCL through torchrun on the one GPU (world size 1: the backend and the rank-0 writes, not the all-reduce)
"$python" -m torch.distributed.run --nproc_per_node 1 main.py --cfg_path config/demo.yaml --model_name gpu_check \
    --device cuda --epochs 2 --output_root "$(mktemp -d)" > "$out/torchrun_nccl.txt" 2>&1
echo "exit statuses and outputs: $out/"

"""--amp's choice of precision (utils.device.amp_dtype) from the CPU's features, utils.cpu's reading, and the
--num_workers default chosen for the device."""
from __future__ import annotations

import logging

import pytest
import torch

from utils import cpu
from utils import device as engine


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make the process see a CPU with the given /proc/cpuinfo flags and torch capability."""
    def set_cpu(flags, capability="AVX2"):
        monkeypatch.setattr(cpu, "_cpuinfo", lambda: ("Fake CPU", frozenset(flags)))
        monkeypatch.setattr(cpu, "torch_cpu_capability", lambda: capability)
        monkeypatch.setattr(engine, "_warned_no_bfloat16", [])
    return set_cpu


@pytest.mark.parametrize("flags,capability,expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512", torch.bfloat16),
    ({"avx2", "amx_bf16", "amx_tile"}, "AVX512", torch.bfloat16),
    ({"avx2", "avx512f"}, "AVX512", None),      # AVX-512 without its bfloat16 extension: emulated
    ({"avx2", "fma"}, "AVX2", None),
    (set(), "AVX512_BF16", torch.bfloat16),     # no /proc/cpuinfo: torch's capability decides
    (set(), "DEFAULT", None),
])
def test_cpu_amp_follows_native_bfloat16(fake_cpu, flags, capability, expected):
    fake_cpu(flags, capability)
    assert engine.amp_dtype(torch.device("cpu")) is expected


def test_no_native_bfloat16_warns_once_and_runs_float32(fake_cpu, caplog):
    fake_cpu({"avx2"})
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with engine.autocast_context(torch.device("cpu"), enabled=True):
                product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.float32
    warnings = [r.getMessage() for r in caplog.records if "--amp" in r.getMessage()]
    assert len(warnings) == 1 and "Fake CPU" in warnings[0] and "float32" in warnings[0]


def test_native_bfloat16_autocasts(fake_cpu):
    fake_cpu({"avx512_bf16"}, "AVX512")
    with engine.autocast_context(torch.device("cpu"), enabled=True):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    with engine.autocast_context(torch.device("cpu"), enabled=False):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32


def test_cuda_is_float16_whatever_the_cpu(fake_cpu):
    fake_cpu({"avx2"})
    assert engine.amp_dtype(torch.device("cuda")) is torch.float16


def test_cpu_description_names_the_features(fake_cpu):
    fake_cpu({"avx2", "avx512f", "amx_bf16", "sse4_2"}, "AVX512")
    line = cpu.cpu_description()
    assert line.startswith("Fake CPU;") and "avx2 avx512f amx_bf16" in line and "sse4_2" not in line
    assert line.endswith("torch kernels AVX512")


def test_num_workers_default_follows_the_device():
    """The other choice made for the machine: no DataLoader worker on CPU, one on CUDA; an explicit value wins."""
    from utils.config import default_config, parse_config

    assert default_config(device="cpu").num_workers == 0
    assert default_config(device="cuda").num_workers == 1
    assert parse_config(["--device", "cpu", "--num_workers", "2"]).num_workers == 2

"""Checkpoint loading: CUDA-saved checkpoints on a CPU-only machine, strict fit, clear mismatch errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.build import build_model
from utils.config import default_config
from utils.engine.checkpoint import CheckpointError, describe_mismatch, load_model_weights, read_state_dict

# Saved with torch.save(model.state_dict()) on an NVIDIA H200 (every tensor on cuda:0) from this config.
CUDA_CHECKPOINT = Path(__file__).parent / "data" / "cuda_tiny_state_dict.pt"
TINY_FLAGS = dict(hidden_dim=32, dim_feedforward=64, nheads=4, num_queries=10, enc_layers=2, dec_layers=2,
                  norm_embed=True, exp_logit_scale=True, enable_classAgnostic=True, enable_refine=True,
                  refine_drop_saResidual=True, salient_loss=True, device="cpu")


def test_cuda_saved_checkpoint_loads_on_cpu():
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):  # the file really holds CUDA tensors: a plain load needs a GPU
            torch.load(CUDA_CHECKPOINT)
    state = read_state_dict(CUDA_CHECKPOINT)
    assert all(t.device.type == "cpu" for t in state.values())
    model = build_model(default_config(**TINY_FLAGS))
    load_model_weights(model, CUDA_CHECKPOINT)
    assert torch.equal(model.state_dict()["query_embed.weight"], state["query_embed.weight"])


def test_mismatch_names_the_flags_that_probably_differ():
    model = build_model(default_config(**{**TINY_FLAGS, "num_queries": 12, "dec_layers": 3}))
    with pytest.raises(CheckpointError) as error:
        load_model_weights(model, CUDA_CHECKPOINT)
    message = str(error.value)
    assert "query_embed.weight" in message and "--num_queries" in message and "--dec_layers" in message


def test_describe_mismatch_for_missing_module():
    with_salient = build_model(default_config(**TINY_FLAGS)).state_dict()
    without = build_model(default_config(**{**TINY_FLAGS, "salient_loss": False})).state_dict()
    assert "--salient_loss" in describe_mismatch(without, with_salient)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "best_x.pkl")

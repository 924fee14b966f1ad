"""The model on CUDA: CPU results in float32; finite float32 losses under float16/bfloat16 autocast."""
import pytest
import torch

from models.build import build_criterion, build_model, build_postprocessor
from scripts.headline_flags import HEADLINE_MODEL_FLAGS
from utils.config import default_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

TINY = dict(hidden_dim=32, nheads=4, dim_feedforward=64, enc_layers=2, dec_layers=3, num_queries=8,
            dropout=0.0)


def setup(dataset):
    cfg = default_config(**{**HEADLINE_MODEL_FLAGS[dataset], **TINY})
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([20, 13, 20])
    mask = torch.arange(20)[None] >= lengths[:, None]
    features = torch.randn(3, 20, 32, generator=gen).masked_fill(mask[..., None], 0)
    steps = torch.arange(20)
    targets = [{"segments": torch.tensor([[0.4, 0.3]]), "labels": torch.zeros(1, dtype=torch.int64),
                "salient_mask": ((steps[: int(n)] < 5) | (steps[: int(n)] > 10))[None]} for n in lengths]
    return cfg, model, features, mask, targets


def to_cuda(targets):
    return [{k: v.cuda() if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


@pytest.mark.parametrize("dataset", ["thumos14", "anet"])
def test_cuda_float32_matches_cpu(dataset):
    cfg, model, features, mask, targets = setup(dataset)
    text = torch.randn(5, 32)
    durations = torch.tensor([30.0, 20.0, 30.0])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = {}
    for device in ("cpu", "cuda"):
        model = model.to(device).eval()
        with torch.no_grad():
            out = model(features.to(device), mask.to(device), text_embeddings=text.to(device),
                        return_intermediates=True)
        detections = build_postprocessor(cfg)(out, durations.to(device))
        model.train()
        criterion = build_criterion(cfg)
        device_targets = to_cuda(targets) if device == "cuda" else targets
        train_out = model(features.to(device), mask.to(device))
        losses = criterion(train_out, device_targets)
        results[device] = (out, detections, losses)
    (cpu, cpu_det, cpu_loss), (gpu, gpu_det, gpu_loss) = results["cpu"], results["cuda"]
    for key in ("pred_boxes", "actionness_logits", "salient_logits", "memory", "hs"):
        assert torch.allclose(cpu[key], gpu[key].cpu(), atol=1e-4), key
    assert torch.allclose(cpu["class_logits"], gpu["class_logits"].cpu(), atol=5e-2)  # amplifies box rounding
    assert torch.allclose(cpu_det[0]["segments"], gpu_det[0]["segments"].cpu(), atol=1e-3)
    for key in cpu_loss:
        assert cpu_loss[key].item() == pytest.approx(gpu_loss[key].item(), abs=1e-4), key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_training_step(dtype):
    cfg, model, features, mask, targets = setup("thumos14")
    model = model.cuda().train()
    criterion = build_criterion(cfg)
    targets = to_cuda(targets)
    with torch.autocast("cuda", dtype=dtype):
        outputs = model(features.cuda(), mask.cuda())
    losses = criterion(outputs, targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    criterion.weighted_total(losses).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

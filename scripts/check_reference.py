"""Compare this implementation with a reference fixture produced by the authors' code.

    python scripts/check_reference.py ../shared/fixtures/reference/model_thumos14_seed0.pt [more.pt ...]

The fixture format is described in shared/fixtures/reference/README.md (part A): option values (`flags`),
an official `state_dict`, inputs, text embeddings, and the official eval-mode outputs, detections,
train-mode outputs, matching, losses and gradients. The model is built from the fixture's flags (float32,
CPU), the state dict loaded with strict=True, and every quantity compared. Prints one row per quantity
with the maximum absolute difference and exits 1 if any exceeds its tolerance:
  - outputs, intermediates, detections, losses: |diff| <= 1e-5;
  - indices, labels, masks: exact;
  - gradients: allclose with rtol 1e-4 (atol 1e-5), the fixtures' own self-check tolerance; the table shows
    the max absolute difference and the worst `|diff| - rtol * |reference|`.
Rows "| given reference ..." recompute the class logits / detections from the fixture's own upstream
tensors, isolating those stages. Importable: `check_fixture(path) -> list[Row]`.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.build import build_criterion, build_model, build_postprocessor  # noqa: E402
from utils.config import ALL_FLAGS, default_config  # noqa: E402

ATOL = 1e-5
GRAD_RTOL = 1e-4
REQUIRED_KEYS = ("flags", "state_dict", "inputs", "text_embeddings", "eval", "train")


@dataclass
class Row:
    quantity: str
    max_abs_diff: float
    criterion: str
    ok: bool


def _abs_row(name: str, value, reference) -> Row:
    value = torch.as_tensor(value).detach().double()
    reference = torch.as_tensor(reference).detach().double()
    if value.shape != reference.shape:
        return Row(name, float("inf"), f"shape {tuple(value.shape)} vs {tuple(reference.shape)}", False)
    diff = (value - reference).abs().max().item() if value.numel() else 0.0
    return Row(name, diff, f"abs <= {ATOL:g}", diff <= ATOL)


def _exact_row(name: str, value, reference) -> Row:
    value, reference = torch.as_tensor(value), torch.as_tensor(reference)
    if value.shape != reference.shape:
        return Row(name, float("inf"), f"shape {tuple(value.shape)} vs {tuple(reference.shape)}", False)
    mismatches = int((value != reference).sum())
    diff = (value.double() - reference.double()).abs().max().item() if value.numel() else 0.0
    return Row(name, diff, "exact" + (f" ({mismatches} differ)" if mismatches else ""), mismatches == 0)


def _grad_row(name: str, value: torch.Tensor | None, reference: torch.Tensor) -> Row:
    if value is None:
        return Row(name, float("inf"), "no gradient", False)
    value, reference = value.double(), reference.double()
    diff = (value - reference).abs()
    excess = (diff - GRAD_RTOL * reference.abs()).max().item()
    criterion = f"rtol {GRAD_RTOL:g}: excess {excess:.2e} <= {ATOL:g}"
    return Row(name, diff.max().item(), criterion, excess <= ATOL)


def config_from_flags(flags: dict) -> argparse.Namespace:
    """The fixture's option values over this project's defaults (keys this project does not know are
    ignored); always CPU."""
    cfg = default_config()
    for key, value in flags.items():
        if key in ALL_FLAGS:
            setattr(cfg, key, value)
    cfg.device = "cpu"
    return cfg


def _capture_intermediates(model) -> tuple[dict, list]:
    """Forward hooks recording the fixture's `intermediates` where this model has the same tensor."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            captured[name] = output.detach()
        return hook

    def keep_reference(module, args, output):  # the decoder returns (hs, reference)
        captured["reference_points"] = output[1].detach()

    handles = [model.backbone.position_encoding.register_forward_hook(keep("pos_embed")),
               model.input_proj.register_forward_hook(keep("input_proj_out")),
               model.transformer.decoder.register_forward_hook(keep_reference)]
    if model.use_backbone:
        handles.append(model.backbone.conv_stack.register_forward_hook(keep("backbone_out")))
    if model.refine_decoder is not None:
        handles.append(model.refine_decoder.register_forward_hook(keep("refine_decoder_out")))
    return captured, handles


@contextlib.contextmanager
def cpu_threads(at_least: int):
    """Run with at least `at_least` torch CPU threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, at_least))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_fixture(path: str | Path) -> list[Row]:
    """Run every comparison of one fixture file; returns the table rows.

    Runs with >= 2 CPU threads: oneDNN's convolutions (input projection, backbone, salient head) sum in a
    different order single-threaded, and the fixtures were produced multi-threaded. Bit-identical upstream
    values matter because the class logits move ~1e-4 per 1-ulp change of a box (the RoI windows move); the
    rows marked "given reference ..." isolate the scoring and post-processing from that amplification.
    """
    with cpu_threads(2):
        return _check_fixture(path)


def _check_fixture(path: str | Path) -> list[Row]:
    fixture = torch.load(path, map_location="cpu", weights_only=False)
    missing = [key for key in REQUIRED_KEYS if key not in fixture]
    if missing:
        raise KeyError(f"{path}: not a reference model fixture, missing keys {missing}")
    cfg = config_from_flags(fixture["flags"])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.load_state_dict(fixture["state_dict"], strict=True)
    criterion = build_criterion(cfg)
    postprocess = build_postprocessor(cfg)
    inputs = fixture["inputs"]
    features, mask = inputs["features"].float(), inputs["mask"].bool()
    targets = fixture["targets"]
    rows = [Row("state_dict (strict load)", 0.0, "exact keys/shapes", True)]

    # eval mode
    model.eval()
    captured, handles = _capture_intermediates(model)
    with torch.no_grad():
        outputs = model(features, mask, text_embeddings=fixture["text_embeddings"].float())
    for handle in handles:
        handle.remove()
    for key, reference in fixture["eval"]["outputs"].items():
        rows.append(_abs_row(f"eval.{key}", outputs[key], reference) if key in outputs
                    else Row(f"eval.{key}", float("inf"), "missing", False))
    for key, reference in fixture["eval"].get("intermediates", {}).items():
        if key in captured:
            rows.append(_abs_row(f"eval.intermediates.{key}", captured[key], reference))
    reference_outputs = fixture["eval"]["outputs"]
    with torch.no_grad():
        lengths = (~mask).sum(1)
        given_boxes = model.proposal_scorer(features, reference_outputs["pred_boxes"], lengths,
                                            fixture["text_embeddings"].float(), model.logit_scale)
    rows.append(_abs_row("eval.class_logits | given reference pred_boxes", given_boxes,
                         reference_outputs["class_logits"]))
    for label, source in (("", outputs), (" | given reference outputs", reference_outputs)):
        detections = postprocess(source, inputs["video_durations"])
        for field in ("scores", "segments", "labels", "query_ids"):
            values = torch.stack([d[field] for d in detections])
            reference = torch.stack([d[field] for d in fixture["eval"]["detections"]])
            exact = field in ("labels", "query_ids")
            compare = _exact_row if exact else _abs_row
            rows.append(compare(f"eval.detections.{field}{label}", values, reference))

    # train mode: outputs, matching, losses, gradients
    model.train()
    model.zero_grad(set_to_none=True)
    outputs = model(features, mask, targets=targets)
    for key, reference in fixture["train"]["outputs"].items():
        row = _exact_row if reference.dtype == torch.bool else _abs_row
        rows.append(row(f"train.{key}", outputs[key], reference) if key in outputs
                    else Row(f"train.{key}", float("inf"), "missing", False))
    matches = criterion.matcher(outputs, targets)
    rows.append(_exact_row("train.matching (query idx)", torch.cat([m[0] for m in matches]),
                           torch.cat([m[0] for m in fixture["train"]["matching"]])))
    rows.append(_exact_row("train.matching (target idx)", torch.cat([m[1] for m in matches]),
                           torch.cat([m[1] for m in fixture["train"]["matching"]])))
    losses = criterion(outputs, targets, matches)
    for key, reference in fixture["train"]["losses"].items():
        if key in criterion.weight_dict:
            rows.append(_abs_row(f"train.losses.{key}", losses[key], reference))
    for key, reference in fixture["train"].get("losses_scaled", {}).items():
        scaled = losses[key] * criterion.weight_dict[key]
        rows.append(_abs_row(f"train.losses_scaled.{key}", scaled, reference))
    total = criterion.weighted_total(losses)
    rows.append(_abs_row("train.weighted_total", total, fixture["train"]["weighted_total"]))

    total.backward()
    params = dict(model.named_parameters())
    for name, reference in fixture["train"].get("grads", {}).items():
        rows.append(_grad_row(f"grad {name}", params[name].grad, reference))
    summary = fixture["train"].get("grad_summary", {})
    if summary:
        worst: dict[str, tuple[float, float, str]] = {}
        for name, stats in summary.items():
            grad = params[name].grad
            if grad is None:
                rows.append(Row(f"grad_summary {name}", float("inf"), "no gradient", False))
                continue
            grad = grad.double()
            mine = {"norm": grad.norm().item(), "abs_sum": grad.abs().sum().item(), "sum": grad.sum().item()}
            for stat, value in mine.items():
                diff = abs(value - stats[stat])
                scale = stats["abs_sum"] if stat == "sum" else abs(stats[stat])
                excess = diff - GRAD_RTOL * scale
                if stat not in worst or excess > worst[stat][1]:
                    worst[stat] = (diff, excess, name)
        for stat, (diff, excess, name) in worst.items():
            scale = "abs_sum" if stat == "sum" else stat
            rows.append(Row(f"grad_summary.{stat} ({len(summary)} params; worst {name})", diff,
                            f"rtol {GRAD_RTOL:g}*{scale}: excess {excess:.2e} <= {ATOL:g}", excess <= ATOL))
    no_grad = sorted(name for name, p in params.items() if p.grad is None)
    expected = sorted(fixture["train"].get("params_without_grad", no_grad))
    rows.append(Row("params without gradient", 0.0 if no_grad == expected else float("inf"),
                    f"same set ({len(expected)})", no_grad == expected))
    return rows


def format_rows(rows: list[Row], title: str) -> str:
    width = max(len(r.quantity) for r in rows)
    lines = [title, f"{'quantity':<{width}}  {'max abs diff':>12}  status  criterion"]
    for r in rows:
        status = "ok" if r.ok else "FAIL"
        lines.append(f"{r.quantity:<{width}}  {r.max_abs_diff:>12.3e}  {status:<6}  {r.criterion}")
    failed = sum(not r.ok for r in rows)
    summary = f"{len(rows) - failed}/{len(rows)} within tolerance"
    lines.append(summary + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", nargs="+", help="reference fixture .pt files")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float32)
    status = 0
    for path in args.fixtures:
        rows = check_fixture(path)
        print(format_rows(rows, f"== {path}"))
        status |= int(any(not r.ok for r in rows))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Compare this implementation with reference fixtures produced by the authors' code.

    python scripts/check_reference.py ../shared/fixtures/reference            # every fixture below, recursively
    python scripts/check_reference.py --threads 1 FIXTURE.pt [MORE.pt or folders ...]
    python scripts/check_reference.py --compile ../shared/fixtures/reference/model_thumos14_seed0.pt

Two formats (shared/fixtures/reference/README.md):
  A. model fixtures (`model_*.pt`, also `options/*.pt`): option values (`flags`), an official `state_dict`,
     inputs, text embeddings, and the official eval-mode outputs, detections, train-mode outputs, matching,
     losses and gradients. The model is built from the flags, the state dict loaded with strict=True, and
     every quantity compared.
  T. trajectory fixtures (`trajectory_*.pt`): a short training run of the original. It is replayed through
     this project's own optimizer/scheduler builders (utils/engine/optim.py) and training step (utils/engine/loop.py
     `train_step`, the code main.py runs), comparing every step's weighted total, losses and gradient norm
     before clipping, the learning rates at the start of every epoch, the parameter groups and the final
     weights.

Each fixture runs in its own precision (`meta.dtype`; absent = float32): float64 fixtures with the model in
`model.double()` and float64 inputs. Tolerances (one table row per quantity, exit status 1 if any fails):
  - float32: outputs, intermediates, detections, losses |diff| <= 1e-5 + 1e-5 * |reference|; gradients
    rtol 1e-4 (atol 1e-5) -- the fixtures' own self-check tolerances (their README: atol = rtol = 1e-5);
  - float64: |diff| <= 1e-10, gradients rtol 1e-8 (atol 1e-10); trajectories: losses, gradient norms,
    learning rates and final weights |diff| <= 1e-12 (the original reproduces itself to ~2e-15);
  - indices, labels, masks: exact.
The A-format float64 fixtures store their losses rounded to float32 (every stored value is a float32
number); ours are rounded the same way before the comparison (the row says so).

Well-posedness of float32 class logits: the proposal scorer amplifies a box difference ~1000-fold (the RoI
windows move over uncorrelated feature rows) and jumps where the `ceil(W / bins)` sampling grid steps, so a
one-ulp difference of a float32 box (another CPU, thread count or BLAS blocking) moves `class_logits` by
~1e-4 without any bug. For float32 fixtures `eval.class_logits` is therefore compared end to end on the
queries whose float32 box is bit-identical to the reference box (a same-grid rule is not enough: the
windows' own rounding is amplified alike); the row says how many were excluded and how many of those
cross a grid step. The end-to-end detections take the excluded queries' class logits from the reference
boxes (the row says so), and the rows "| given reference ..." recompute the class logits / detections from
the fixture's own upstream tensors (teacher-forced, every query). float64 fixtures compare everything end
to end.

`--compile` runs the model's forward (eval and train mode, hence its backward too) through torch.compile
exactly as `main.py --compile` does (utils/engine/compiled.py) and holds it to the same tolerances; the
teacher-forced rows call the proposal scorer eagerly. Compiling takes minutes on a CPU per fixture.

Importable: `check_fixture(path, compile=False) -> list[Row]`.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.collate import collate_batch  # noqa: E402
from models.build import build_criterion, build_model, build_postprocessor, trains_classes  # noqa: E402
from models.roi_align import sampling_layout  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.config import ALL_FLAGS, default_config  # noqa: E402
from utils.engine.compiled import compiled  # noqa: E402
from utils.engine.loop import train_step  # noqa: E402
from utils.engine.optim import build_optimization  # noqa: E402

MODEL_KEYS = ("flags", "state_dict", "inputs", "text_embeddings", "targets", "eval", "train")
TRAJECTORY_KEYS = ("flags", "init_state_dict", "batches", "steps", "lrs", "final_state_dict")


@dataclass(frozen=True)
class Tolerance:
    atol: float  # outputs, losses, detections (and the allowed gradient excess)
    rtol: float  # outputs, losses, detections: |diff| <= atol + rtol * |reference|
    grad_rtol: float
    trajectory: float  # every quantity of a trajectory fixture (absolute)


TOLERANCES = {torch.float32: Tolerance(atol=1e-5, rtol=1e-5, grad_rtol=1e-4, trajectory=1e-5),
              torch.float64: Tolerance(atol=1e-10, rtol=0.0, grad_rtol=1e-8, trajectory=1e-12)}


@dataclass
class Row:
    quantity: str
    max_abs_diff: float
    criterion: str
    ok: bool


def _as_float64(value) -> torch.Tensor:
    """Tensors as they are (in float64); Python numbers and lists straight to float64 (never via float32)."""
    if isinstance(value, torch.Tensor):
        return value.detach().double()
    return torch.tensor(value, dtype=torch.float64)


def _abs_row(name: str, value, reference, atol: float, note: str = "", rtol: float = 0.0) -> Row:
    value, reference = _as_float64(value), _as_float64(reference)
    if value.shape != reference.shape:
        return Row(name, float("inf"), f"shape {tuple(value.shape)} vs {tuple(reference.shape)}", False)
    if not value.numel():
        return Row(name, 0.0, "empty", True)
    diff = (value - reference).abs()
    if not rtol:
        return Row(name, diff.max().item(), f"abs <= {atol:g}" + note, diff.max().item() <= atol)
    excess = (diff - rtol * reference.abs()).max().item()
    return Row(name, diff.max().item(), f"abs <= {atol:g} + {rtol:g}*|ref| (excess {excess:.1e})" + note,
               excess <= atol)


def _exact_row(name: str, value, reference) -> Row:
    value, reference = torch.as_tensor(value), torch.as_tensor(reference)
    if value.shape != reference.shape:
        return Row(name, float("inf"), f"shape {tuple(value.shape)} vs {tuple(reference.shape)}", False)
    mismatches = int((value != reference).sum())
    diff = (value.double() - reference.double()).abs().max().item() if value.numel() else 0.0
    return Row(name, diff, "exact" + (f" ({mismatches} differ)" if mismatches else ""), mismatches == 0)


def _grad_row(name: str, value: torch.Tensor | None, reference: torch.Tensor, tol: Tolerance) -> Row:
    if value is None:
        return Row(name, float("inf"), "no gradient", False)
    value, reference = value.double(), reference.double()
    diff = (value - reference).abs()
    excess = (diff - tol.grad_rtol * reference.abs()).max().item()
    criterion = f"rtol {tol.grad_rtol:g}: excess {excess:.2e} <= {tol.atol:g}"
    return Row(name, diff.max().item(), criterion, excess <= tol.atol)


def config_from_flags(flags: dict) -> argparse.Namespace:
    """The fixture's option values over this project's defaults (keys this project does not know are
    ignored); always CPU."""
    cfg = default_config()
    for key, value in flags.items():
        if key in ALL_FLAGS:
            setattr(cfg, key, value)
    cfg.device = "cpu"
    return cfg


def fixture_dtype(fixture: dict) -> torch.dtype:
    """The precision a fixture was made in: `meta.dtype`, float32 when absent."""
    name = (fixture.get("meta") or {}).get("dtype", "float32")
    if name not in ("float32", "float64"):
        raise ValueError(f"meta.dtype: expected float32 or float64, got {name!r}")
    return torch.float64 if name == "float64" else torch.float32


def _build(cfg, state_dict: dict, dtype: torch.dtype):
    torch.manual_seed(0)  # the weights come from the fixture; a fixed seed keeps building deterministic
    model = build_model(cfg).to(dtype)
    model.load_state_dict(state_dict, strict=True)
    return model


def _precision(dtype: torch.dtype, compile: bool) -> str:
    """The first row's label: the fixture's precision, and whether the forward was compiled."""
    return str(dtype).replace("torch.", "") + (", torch.compile" if compile else "")


def _targets_as(targets: list[dict], dtype: torch.dtype) -> list[dict]:
    return [{**t, "segments": t["segments"].to(dtype)} for t in targets]


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


def ill_posed_queries(boxes: torch.Tensor, reference_boxes: torch.Tensor, lengths: torch.Tensor, num_bins: int,
                      length: int) -> tuple[torch.Tensor, str]:
    """`[B, Q]` bool, True where a float32 end-to-end class-logit comparison is not well-posed, and a note.

    That is wherever our float32 box is not bit-identical to the reference box: the scorer amplifies a box
    difference ~1000-fold (the RoI windows move over uncorrelated feature rows; the window coordinates'
    own float32 rounding is amplified alike), and where the RoI sampling layout (ceil(W / bins) points per
    bin) differs it jumps. Neither is an implementation difference; those queries' scoring is compared
    through the teacher-forced rows ("| given reference pred_boxes").
    """
    reference_boxes = reference_boxes.to(boxes.dtype)
    moved = (boxes != reference_boxes).any(-1)
    grid, used = sampling_layout(boxes, lengths, num_bins, length)
    ref_grid, ref_used = sampling_layout(reference_boxes, lengths, num_bins, length)
    steps = (grid != ref_grid) | (used != ref_used).flatten(2).any(-1)
    box_diff = (boxes - reference_boxes).abs().max().item()
    note = (f" on {int((~moved).sum())}/{moved.numel()} queries; excluded: the {int(moved.sum())} whose float32 "
            f"box is not bit-identical to the reference (max diff {box_diff:.1e}; {int(steps.sum())} of them "
            f"across an RoI sampling step) -- the scorer amplifies box rounding ~1000x, see '| given "
            f"reference pred_boxes'")
    return moved, note


def check_fixture(path: str | Path, compile: bool = False) -> list[Row]:
    """Run every comparison of one fixture file (format A or T, in its own precision); returns the rows.
    `compile`: the model's forward through torch.compile (`--compile`)."""
    fixture = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(fixture, dict):
        raise ValueError(f"{path}: not a reference fixture (expected a dict)")
    if all(key in fixture for key in TRAJECTORY_KEYS):
        return _check_trajectory(fixture, compile)
    missing = [key for key in MODEL_KEYS if key not in fixture]
    if missing:
        raise ValueError(f"{path}: not a reference fixture (model fixture keys missing: {missing}; "
                         f"a trajectory fixture has {list(TRAJECTORY_KEYS)})")
    return _check_model(fixture, compile)


def _check_model(fixture: dict, compile: bool = False) -> list[Row]:
    dtype = fixture_dtype(fixture)
    tol = TOLERANCES[dtype]
    cfg = config_from_flags(fixture["flags"])
    model = _build(cfg, fixture["state_dict"], dtype)
    run = compiled(model, compile)  # what runs the forward; `model` keeps the plain parameter names
    criterion = build_criterion(cfg)
    postprocess = build_postprocessor(cfg)
    inputs = fixture["inputs"]
    features, mask = inputs["features"].to(dtype), inputs["mask"].bool()
    text = fixture["text_embeddings"].to(dtype)
    targets = _targets_as(fixture["targets"], dtype)
    rows = [Row(f"state_dict (strict load), {_precision(dtype, compile)}", 0.0, "exact keys/shapes", True)]

    def abs_row(name, value, reference, note=""):
        return _abs_row(name, value, reference, tol.atol, note, tol.rtol)

    # eval mode
    model.eval()
    captured, handles = _capture_intermediates(model)
    with torch.no_grad():
        outputs = run(features, mask, text_embeddings=text, return_intermediates=True)
    for handle in handles:
        handle.remove()
    reference_outputs = fixture["eval"]["outputs"]
    lengths = (~mask).sum(1)
    uses_roi_logits = (model.proposal_scorer is not None and model.classifies_by_roi
                       and "class_logits" in reference_outputs)
    excluded, note = None, ""
    if dtype == torch.float32 and uses_roi_logits:
        excluded, note = ill_posed_queries(outputs["pred_boxes"], reference_outputs["pred_boxes"], lengths,
                                           model.proposal_scorer.num_bins, mask.shape[1])
    for key, reference in reference_outputs.items():
        if key not in outputs:
            rows.append(Row(f"eval.{key}", float("inf"), "missing", False))
        elif key == "class_logits" and excluded is not None:
            kept = ~excluded
            rows.append(abs_row("eval.class_logits", outputs[key][kept], reference[kept], note))
        else:
            rows.append(abs_row(f"eval.{key}", outputs[key], reference))
    for key, reference in fixture["eval"].get("intermediates", {}).items():
        if key in captured:
            rows.append(abs_row(f"eval.intermediates.{key}", captured[key], reference))
    if uses_roi_logits:
        with torch.no_grad():
            given_logits = model.proposal_scorer(features, reference_outputs["pred_boxes"].to(dtype), lengths,
                                                 text, model.logit_scale)
        rows.append(abs_row("eval.class_logits | given reference pred_boxes", given_logits,
                            reference_outputs["class_logits"]))
    label = ""
    if excluded is not None and excluded.any():
        outputs = {**outputs, "class_logits": torch.where(excluded[..., None], given_logits,
                                                          outputs["class_logits"])}
        label = f" (excluded queries' class_logits from the reference boxes: {int(excluded.sum())})"
    for suffix, source in ((label, outputs), (" | given reference outputs", reference_outputs)):
        detections = postprocess(source, inputs["video_durations"])
        for field in ("scores", "segments", "labels", "query_ids"):
            values = torch.stack([d[field] for d in detections])
            reference = torch.stack([d[field] for d in fixture["eval"]["detections"]])
            if field in ("labels", "query_ids"):
                rows.append(_exact_row(f"eval.detections.{field}{suffix}", values, reference))
            else:
                rows.append(abs_row(f"eval.detections.{field}{suffix}", values, reference))

    # train mode: outputs, matching, losses, gradients. The text goes in where the losses use the class logits
    # (loss_ce; main.py trains so) or the fixture compares them: class logits that no loss reads change nothing
    # eagerly, but a compiled graph hands their parameter (logit_scale) a zero gradient where eager leaves none
    model.train()
    model.zero_grad(set_to_none=True)
    train_text = text if trains_classes(cfg) or "class_logits" in fixture["train"]["outputs"] else None
    outputs = run(features, mask, text_embeddings=train_text)
    compared = {**outputs, "salient_gt": criterion.salient_target(outputs, targets)} \
        if "salient_logits" in outputs else outputs   # the salient loss's target, built by the criterion
    for key, reference in fixture["train"]["outputs"].items():
        row = _exact_row if reference.dtype == torch.bool else abs_row
        rows.append(row(f"train.{key}", compared[key], reference) if key in compared
                    else Row(f"train.{key}", float("inf"), "missing", False))
    matches = criterion.matcher(outputs, targets)
    rows.append(_exact_row("train.matching (query idx)", torch.cat([m[0] for m in matches]),
                           torch.cat([m[0] for m in fixture["train"]["matching"]])))
    rows.append(_exact_row("train.matching (target idx)", torch.cat([m[1] for m in matches]),
                           torch.cat([m[1] for m in fixture["train"]["matching"]])))
    losses = criterion(outputs, targets, matches)
    rows.extend(_loss_rows(fixture["train"], losses, criterion.weight_dict, dtype, tol))
    total = criterion.weighted_total(losses)
    total.backward()
    rows.extend(_gradient_rows(fixture["train"], dict(model.named_parameters()), tol))
    return rows


def _loss_rows(reference: dict, losses: dict, weight_dict: dict, dtype: torch.dtype, tol: Tolerance) -> list[Row]:
    """Unweighted, scaled and total losses. A float64 fixture whose losses are all float32 numbers stored them
    rounded to float32: ours are rounded likewise (a faithful float64 value rounds to the same float32)."""
    stored = {key: value for key, value in reference["losses"].items() if key in weight_dict}
    rounded = dtype == torch.float64 and all(float(np.float32(v)) == v for v in stored.values())
    ours = {key: float(value.detach()) for key, value in losses.items()}
    if rounded:
        ours = {key: float(np.float32(value)) for key, value in ours.items()}
    note = " (fixture stores float32-rounded losses; ours rounded likewise)" if rounded else ""
    rows = []
    for key, value in stored.items():
        rows.append(_abs_row(f"train.losses.{key}", ours[key], value, tol.atol, note, tol.rtol)
                    if key in ours else Row(f"train.losses.{key}", float("inf"), "missing", False))
    for key, value in reference.get("losses_scaled", {}).items():
        if key in ours:
            rows.append(_abs_row(f"train.losses_scaled.{key}", ours[key] * weight_dict[key], value, tol.atol, note,
                                 tol.rtol))
    total = sum(ours[key] * weight for key, weight in weight_dict.items() if key in ours)
    rows.append(_abs_row("train.weighted_total", total, reference["weighted_total"], tol.atol, note, tol.rtol))
    return rows


def _gradient_rows(reference: dict, params: dict, tol: Tolerance) -> list[Row]:
    rows = [_grad_row(f"grad {name}", params[name].grad, value, tol)
            for name, value in reference.get("grads", {}).items()]
    summary = reference.get("grad_summary", {})
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
                excess = diff - tol.grad_rtol * scale
                if stat not in worst or excess > worst[stat][1]:
                    worst[stat] = (diff, excess, name)
        for stat, (diff, excess, name) in worst.items():
            scale = "abs_sum" if stat == "sum" else stat
            rows.append(Row(f"grad_summary.{stat} ({len(summary)} params; worst {name})", diff,
                            f"rtol {tol.grad_rtol:g}*{scale}: excess {excess:.2e} <= {tol.atol:g}",
                            excess <= tol.atol))
    no_grad = sorted(name for name, p in params.items() if p.grad is None)
    expected = sorted(reference.get("params_without_grad", no_grad))
    rows.append(Row("params without gradient", 0.0 if no_grad == expected else float("inf"),
                    f"same set ({len(expected)})" + ("" if no_grad == expected else f": ours {no_grad}"),
                    no_grad == expected))
    return rows


def _check_trajectory(fixture: dict, compile: bool = False) -> list[Row]:
    """Replay a training run through utils/engine/optim.py and utils/engine.train_step (what main.py runs)."""
    dtype = fixture_dtype(fixture)
    atol = TOLERANCES[dtype].trajectory
    cfg = config_from_flags(fixture["flags"])
    model = _build(cfg, fixture["init_state_dict"], dtype)
    run = compiled(model, compile)
    criterion = build_criterion(cfg)
    optimizer, scheduler = build_optimization(model, cfg)
    rows = [Row(f"init_state_dict (strict load), {_precision(dtype, compile)}", 0.0, "exact keys/shapes", True)]
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
    if "param_groups" in fixture:
        same = groups == [list(g) for g in fixture["param_groups"]]
        rows.append(Row("param_groups (names, order)", 0.0 if same else float("inf"),
                        f"same ({' + '.join(str(len(g)) for g in groups)} parameters)", same))
    text = fixture["text_embeddings"].to(dtype) if "text_embeddings" in fixture else None
    # the fixture's items are (features, target): no item identity, which training does not read
    batches = [collate_batch([(f, t, None) for f, t in batch], dtype=dtype) for batch in fixture["batches"]]
    steps, lrs = [], []
    model.train()
    criterion.train()
    for epoch in range(cfg.epochs):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        for index, (features, mask, targets, _) in enumerate(batches):
            result = train_step(run, criterion, optimizer, features, mask, _targets_as(targets, dtype),
                                cfg.clip_max_norm, text_embeddings=text,
                                where=f"epoch {epoch} batch {index}")
            steps.append(result)
        scheduler.step()

    reference_steps = fixture["steps"]
    rows.append(Row("steps (count)", abs(len(steps) - len(reference_steps)),
                    f"{len(reference_steps)} = epochs x batches", len(steps) == len(reference_steps)))
    pairs = list(zip(steps, reference_steps))
    rows.append(_abs_row(f"steps[{len(pairs)}].weighted_total", [s.total for s, _ in pairs],
                         [r["weighted_total"] for _, r in pairs], atol))
    for key in reference_steps[0]["losses"]:
        if key in criterion.weight_dict:
            ours = [s.losses.get(key, float("inf")) for s, _ in pairs]
            rows.append(_abs_row(f"steps[{len(pairs)}].losses.{key}", ours, [r["losses"][key] for _, r in pairs],
                                 atol))
    rows.append(_abs_row(f"steps[{len(pairs)}].grad_norm_before_clip",
                         [float("inf") if s.grad_norm is None else s.grad_norm for s, _ in pairs],
                         [r["grad_norm_before_clip"] for _, r in pairs], atol))
    rows.append(_abs_row(f"lrs ({len(lrs)} epochs x {len(lrs[0])} groups)", lrs, fixture["lrs"], atol))
    state = model.state_dict()
    worst, worst_name = 0.0, ""
    for name, reference in fixture["final_state_dict"].items():
        diff = (state[name].double() - reference.double()).abs().max().item() if reference.numel() else 0.0
        if diff >= worst:
            worst, worst_name = diff, name
    changed = max((fixture["final_state_dict"][n].double() - fixture["init_state_dict"][n].double()).abs().max()
                  .item() for n in fixture["final_state_dict"] if fixture["final_state_dict"][n].numel())
    rows.append(Row(f"final_state_dict ({len(state)} tensors; worst {worst_name}; largest change {changed:.1e})",
                    worst, f"abs <= {atol:g}", worst <= atol))
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


def fixture_paths(paths: list[str]) -> list[Path]:
    """Files as given; folders expand to every `.pt` below them (recursively, sorted)."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            below = sorted(item.rglob("*.pt"))
            if not below:
                raise FileNotFoundError(f"{item}: no .pt fixture below this folder")
            found.extend(below)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such fixture file or folder")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", nargs="+", help="reference fixture .pt files or folders (searched recursively)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for the checks (default: torch's own default)")
    parser.add_argument("--compile", action="store_true",
                        help="run the model's forward through torch.compile, as main.py --compile (same tolerances)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    paths = fixture_paths(args.fixtures)
    torch.set_default_dtype(torch.float32)
    status = 0
    for path in paths:
        rows = check_fixture(path, compile=args.compile)
        print(format_rows(rows, f"== {path} ({torch.get_num_threads()} threads"
                                f"{', torch.compile' if args.compile else ''})"))
        status |= int(any(not r.ok for r in rows))
    if len(paths) > 1:
        print(f"{len(paths)} fixtures checked: " + ("all within tolerance" if status == 0 else "FAILURES above"))
    return status


if __name__ == "__main__":
    sys.exit(run_cli(main))

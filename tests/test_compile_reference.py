"""`--compile`: the torch.compile'd model against the official code's fixtures, with the eager tolerances.

One float32 and one float64 model fixture (A format): eval-mode outputs, intermediates and detections,
train-mode outputs, matching, losses and gradients, each forward through torch.compile (inductor) as
`main.py --compile` runs it. Compiling dominates the time (minutes on a 2-core CPU, cold cache).
"""
import pytest
from torch._dynamo.utils import counters

from scripts.check_reference import check_fixture, format_rows

pytestmark = [pytest.mark.fidelity, pytest.mark.slow, pytest.mark.compile]

FLOAT32, FLOAT64 = "model_thumos14_seed0.pt", "model_anet_seed0_f64.pt"


@pytest.mark.parametrize("name", [FLOAT32, FLOAT64])
def test_compiled_model_reproduces_the_fixture(reference_dir, name):
    graphs_before = counters["stats"]["unique_graphs"]
    rows = check_fixture(reference_dir / name, compile=True)
    assert counters["stats"]["unique_graphs"] > graphs_before  # inductor graphs ran, not an eager fallback
    assert rows[0].quantity.endswith("torch.compile")
    assert rows and all(row.ok for row in rows), format_rows(rows, name)
    names = {row.quantity for row in rows}
    for quantity in ("eval.pred_boxes", "eval.class_logits", "eval.salient_logits", "eval.intermediates.pos_embed",
                     "train.pred_boxes", "train.matching (query idx)", "train.losses.loss_bbox",
                     "train.weighted_total", "params without gradient"):
        assert quantity in names
    assert any(q.startswith("grad ") for q in names) and any(q.startswith("grad_summary.") for q in names)
    if name == FLOAT64:  # double precision: everything end to end, far below the float32 tolerance
        for row in rows:
            assert "excluded" not in row.criterion and row.max_abs_diff < 1e-8, row

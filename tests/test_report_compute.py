"""The report's Compute section: steps spent against full budgets, stops per rung, the rung plot."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd

from archsearch.report.compute import compute_usage, rung_loss_steps
from archsearch.report.document import to_markdown
from archsearch.report.plots import plot_rungs
from archsearch.report.sections import _compute

NAN = math.nan


def table() -> pd.DataFrame:
    """Six trials of a 180-step budget with rungs at 20 and 60: two completed, three stopped
    (two at 20, one at 60), one reused (trained nothing)."""
    return pd.DataFrame({
        "number":          [0, 1, 2, 3, 4, 5],
        "state":           ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE"],
        "val_loss":        [0.10, NAN, 0.08, NAN, NAN, 0.08],
        "steps_trained":   [180, 20, 180, 60, 20, 180],
        "stopped_at_step": [NAN, 20, NAN, 60, 20, NAN],
        "val_loss_at_20":  [0.30, 0.50, 0.28, 0.33, 0.60, 0.28],
        "val_loss_at_60":  [0.20, NAN, 0.18, 0.25, NAN, 0.18],
        "reused_from":     [None, None, None, None, None, 2],
        "train.steps":     [180] * 6,
    })


def test_steps_spent_and_saved():
    usage = compute_usage(table())
    assert usage.trials == 5                      # the reused trial trained nothing
    assert usage.spent_steps == 180 + 20 + 180 + 60 + 20
    assert usage.full_steps == 5 * 180
    assert math.isclose(usage.saved_fraction, 1 - 460 / 900)
    assert usage.per_rung.to_dict("list") == {"step": [20, 60], "reached": [5, 3], "stopped": [2, 1]}
    assert usage.stopped == 3


def test_curves_end_where_a_trial_stopped():
    curves = compute_usage(table()).curves
    assert curves[curves["number"] == 3]["step"].tolist() == [20, 60]
    assert curves[curves["number"] == 0][["step", "val_loss"]].values.tolist() == [[20, 0.30], [60, 0.20], [180, 0.10]]
    assert 5 not in set(curves["number"])


def test_no_section_without_early_stopping():
    df = table().drop(columns=["val_loss_at_20", "val_loss_at_60", "stopped_at_step"])
    assert compute_usage(df) is None
    assert _compute(SimpleNamespace(compute=None), None, 2) == []
    assert rung_loss_steps(["val_loss_at_60", "val_loss", "val_loss_at_20", "val_loss_t0"]) == [20, 60]


def test_section_and_plot(tmp_path):
    study = SimpleNamespace(name="s", compute=compute_usage(table()))
    figure = plot_rungs(study, None, tmp_path / "rungs.png")
    assert figure is not None and figure.stat().st_size > 1000
    text = to_markdown(_compute(study, figure, 2), tmp_path)
    assert "## Compute: early stopping" in text
    assert "5 trials trained **460 steps** where full budgets would have taken 900: **49% saved**" in text
    assert "rungs.png" in text and "| 60 | 3 | 1 |" in text.replace("  ", " ")


def test_a_stopped_trial_shows_why_among_the_failures(tmp_path):
    from archsearch.report.sections import _failures

    df = table()
    df["fail_reason"] = [None, math.nan, None, None, math.nan, None]
    df["stop_reason"] = [None, "stopped at rung 0 (step 20): position 2 of 3 at this rung (keeps the top 1)", None,
                         "stopped at rung 1 (step 60): position 1 of 3", "stopped at rung 0 (step 20): x", None]
    completed = df[df["state"] == "COMPLETE"]
    text = to_markdown(_failures(SimpleNamespace(input=SimpleNamespace(df=df), completed=completed, feasible=completed), 2),
                       tmp_path)
    assert "| #1 | pruned | stopped at rung 0 (step 20): position 2 of 3" in text
    assert "| #3 | pruned | stopped at rung 1 (step 60)" in text

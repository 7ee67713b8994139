"""One rule for which trials can be on the front, used by the study folder, the live display and the report."""

from __future__ import annotations

import io
import math

import pandas as pd
from rich.console import Console

from archsearch.report.live import StudyDisplay
from archsearch.results import front_candidates, front_of

OBJECTIVES, DIRECTIONS = ["val_loss", "train_throughput"], ["minimize", "maximize"]


def table() -> pd.DataFrame:
    return pd.DataFrame({
        "number":           [0, 1, 2, 3, 4, 5, 6],
        "state":            ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"],
        "val_loss":         [0.10, 0.20, 0.05, 0.30, 0.01, 0.10, math.nan],
        "train_throughput": [100.0, 300.0, 500.0, 50.0, 900.0, 100.0, 999.0],
        "feasible":         [None, True, False, math.nan, True, True, True],
        "reused_from":      [None, None, None, None, None, 0, None],
    })


def test_candidates_are_complete_originals_with_finite_objectives():
    completed, feasible = front_candidates(table(), OBJECTIVES)
    assert completed["number"].tolist() == [0, 1, 2, 3]  # not the failure, the duplicate, the NaN loss
    assert feasible["number"].tolist() == [0, 1, 3]       # an empty `feasible` cell is a trial without constraints


def test_an_infeasible_trial_is_off_the_front_however_good():
    assert front_of(table(), OBJECTIVES, DIRECTIONS)["number"].tolist() == [0, 1]  # #2 dominates both but is infeasible


def test_no_constraint_column_means_every_candidate_is_feasible():
    df = table().drop(columns="feasible")
    assert front_of(df, OBJECTIVES, DIRECTIONS)["number"].tolist() == [2]


def test_the_live_display_uses_the_same_rule():
    display = StudyDisplay(Console(file=io.StringIO()), "s", 7, OBJECTIVES, DIRECTIONS, enabled=False)
    assert display.compute_front(table())["number"].tolist() == front_of(table(), OBJECTIVES, DIRECTIONS)["number"].tolist()


def test_missing_objective_columns_give_an_empty_front():
    assert front_of(table().drop(columns="val_loss"), OBJECTIVES, DIRECTIONS).empty


def _dominated_by_definition(values, directions):
    """The definition, pair by pair: a row is off the front when another is no worse in every
    objective and better in one; rows with a NaN are off it."""
    signs = [1 if d == "minimize" else -1 for d in directions]
    rows = [[v * s for v, s in zip(row, signs)] for row in values]
    finite = [all(math.isfinite(v) for v in row) for row in rows]
    return [ok and not any(finite[j] and all(b <= a for a, b in zip(row, other))
                           and any(b < a for a, b in zip(row, other)) for j, other in enumerate(rows))
            for ok, row in zip(finite, rows)]


def test_the_fast_front_is_the_definitions_front():
    """pareto_mask culls with the lexicographic minimum (O(n · front)); on random small-integer
    points (many ties and duplicates), with NaNs, in 1 to 3 objectives of either direction, it
    keeps exactly the rows the definition keeps."""
    import numpy as np

    from archsearch.pareto import pareto_mask

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k = int(rng.integers(0, 40)), int(rng.integers(1, 4))
        values = rng.integers(0, 5, size=(n, k)).astype(float)
        if n:
            values[rng.random(n) < 0.1, int(rng.integers(0, k))] = np.nan
        directions = [str(d) for d in rng.choice(["minimize", "maximize"], k)]
        assert pareto_mask(values, directions).tolist() == _dominated_by_definition(values.tolist(), directions)

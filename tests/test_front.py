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

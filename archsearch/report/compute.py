"""Where a study's training compute went: steps spent against the full budget, stops per rung.

    usage = compute_usage(df)          # None when no trial was stopped early and none has rungs
    usage.saved_fraction, usage.per_rung, usage.curves

Read from the results table alone (archsearch.results): `steps_trained` (the steps a trial
actually took), `train.steps` (its full budget), `stopped_at_step` and the rung losses
`val_loss_at_<step>` that early stopping records (archsearch.search.stopping), plus `val_loss`
at the full budget for a completed trial. A reused trial (an identical config's result, told
again) trained nothing and counts zero; a failure counts the steps it took when they are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..schema.paths import TRAIN, qualified
from ..search.rungs import RUNG_LOSS_PREFIX, rung_loss_column, rung_loss_columns

__all__ = ["ComputeUsage", "compute_usage", "rung_loss_steps"]

_TRAINED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class ComputeUsage:
    trials: int              # trials that trained (reused ones excluded)
    spent_steps: int         # training steps they took
    full_steps: int          # what they would have taken at their full budgets
    per_rung: pd.DataFrame   # step, reached, stopped: trials that reached each rung and stopped there
    curves: pd.DataFrame     # number, step, val_loss, state: each trial's rung losses and final loss

    @property
    def saved_fraction(self) -> float:
        return 1 - self.spent_steps / self.full_steps if self.full_steps else 0.0

    @property
    def stopped(self) -> int:
        return int(self.per_rung["stopped"].sum()) if len(self.per_rung) else 0


def rung_loss_steps(columns) -> list[int]:
    """The rung steps that have a `val_loss_at_<step>` column, in order."""
    return [int(c.removeprefix(RUNG_LOSS_PREFIX)) for c in rung_loss_columns(map(str, columns))]


def compute_usage(df: pd.DataFrame) -> ComputeUsage | None:
    """The study's compute (see the module docstring); None when it did not stop early."""
    steps_col = qualified(TRAIN, "steps")
    rungs = rung_loss_steps(df.columns)
    if df.empty or "steps_trained" not in df.columns or steps_col not in df.columns or not rungs:
        return None
    trained = df[df["state"].isin(_TRAINED) & df["steps_trained"].notna()]
    if "reused_from" in trained.columns:
        trained = trained[trained["reused_from"].isna()]
    if trained.empty:
        return None
    budget = pd.to_numeric(trained[steps_col], errors="coerce")
    spent = pd.to_numeric(trained["steps_trained"], errors="coerce").clip(upper=budget)
    stopped_at = pd.to_numeric(trained.get("stopped_at_step", pd.Series(index=trained.index, dtype=float)), errors="coerce")
    per_rung = pd.DataFrame({
        "step": rungs,
        "reached": [int(trained[rung_loss_column(s)].notna().sum()) for s in rungs],
        "stopped": [int(((trained["state"] == "PRUNED") & (stopped_at == s)).sum()) for s in rungs],
    })
    return ComputeUsage(len(trained), int(spent.sum()), int(budget.sum()), per_rung, _curves(trained, rungs, steps_col))


def _curves(trained: pd.DataFrame, rungs: list[int], steps_col: str) -> pd.DataFrame:
    rows = []
    for _, row in trained.iterrows():
        points = [(s, row[rung_loss_column(s)]) for s in rungs if pd.notna(row[rung_loss_column(s)])]
        if row["state"] == "COMPLETE" and pd.notna(row.get("val_loss")):
            points.append((int(row[steps_col]), row["val_loss"]))
        rows += [{"number": int(row["number"]), "step": int(s), "val_loss": float(v), "state": row["state"]}
                 for s, v in points]
    return pd.DataFrame(rows, columns=["number", "step", "val_loss", "state"])

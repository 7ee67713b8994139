"""The front against a search's hand-designed baselines (`study.baselines`): who dominates each, by how much.

    verdicts = against_baselines(front, baselines, ["val_loss", "train_throughput_normalized"],
                                 ["minimize", "maximize"])
    verdicts[0].dominators      # number, and per objective the front member's gain over the baseline

A front member dominates a baseline when it is at least as good in every objective and better in
one. Its gain is, per objective, × (member ÷ baseline) for one maximized (throughput: 1.8× the
images/s) and the % by which it is lower for one minimized (loss: 12% lower); a loss better at
equal or higher throughput, a throughput better at equal or lower loss. A baseline that failed,
or that no member dominates, says so. Pure: tables in, verdicts out; no plotting and no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["BaselineVerdict", "against_baselines", "dominates", "gain", "describe_gain"]


@dataclass
class BaselineVerdict:
    label: str                       # the baseline as written in study.baselines
    number: int                      # its trial in the baselines study
    state: str                       # COMPLETE, FAIL, ...
    values: dict[str, float]         # its objectives
    dominators: pd.DataFrame = field(default_factory=pd.DataFrame)  # number + one gain column per objective
    fail_reason: str | None = None

    @property
    def best(self) -> dict[str, float]:
        """Per objective, the largest gain among the members that dominate it (empty if none does)."""
        if self.dominators.empty:
            return {}
        return {o: float(self.dominators[o].max()) for o in self.values}


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """`a` at least as good as `b` in every objective and better in one."""
    signed = [(x, y) if d == "minimize" else (-x, -y) for x, y, d in zip(a, b, directions)]
    return all(x <= y for x, y in signed) and any(x < y for x, y in signed)


def gain(member: float, baseline: float, direction: str) -> float:
    """How much better `member` is than `baseline`: a ratio for a maximized objective, a percent
    lower for a minimized one (nan where the baseline's value gives no scale)."""
    if direction == "maximize":
        return member / baseline if baseline > 0 else float("nan")
    return (baseline - member) / abs(baseline) * 100 if baseline != 0 else float("nan")


def describe_gain(value: float, direction: str) -> str:
    """`1.8×` for a maximized objective, `12.0% lower` for a minimized one."""
    if value != value:
        return "n/a"
    return f"{value:.2f}×" if direction == "maximize" else f"{value:.1f}% lower"


def against_baselines(front: pd.DataFrame, baselines: pd.DataFrame | None, objectives: list[str],
                      directions: list[str]) -> list[BaselineVerdict]:
    """One verdict per baseline trial of `baselines` (a results table with a `baseline` column),
    against the members of `front` (rows with `number` and the objectives)."""
    if baselines is None or baselines.empty:
        return []
    out = []
    for _, row in baselines.sort_values("number").iterrows():
        values = {o: float(row[o]) if pd.notna(row.get(o)) else float("nan") for o in objectives}
        verdict = BaselineVerdict(str(row.get("baseline")), int(row["number"]), str(row["state"]), values,
                                  pd.DataFrame(columns=["number", *objectives]),
                                  row.get("fail_reason") if isinstance(row.get("fail_reason"), str) else None)
        measured = row["state"] == "COMPLETE" and all(v == v for v in values.values())
        if measured and not front.empty:
            point = [values[o] for o in objectives]
            rows = []
            for _, member in front.iterrows():
                theirs = [float(member[o]) for o in objectives]
                if dominates(theirs, point, directions):
                    rows.append({"number": int(member["number"]),
                                 **{o: gain(m, b, d) for o, m, b, d in zip(objectives, theirs, point, directions)}})
            if rows:
                verdict.dominators = pd.DataFrame(rows, columns=["number", *objectives])
        out.append(verdict)
    return out

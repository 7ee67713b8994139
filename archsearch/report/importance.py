"""Which searched fields mattered: Optuna's parameter importances, one set per objective.

    table = param_importances(study, ["val_loss", "train_throughput"], ["minimize", "maximize"])

PED-ANOVA (Optuna's default for speed and for conditional parameters) scores how differently a
parameter is distributed among the best trials than among all of them. It treats its target as
minimized, so a maximized objective is negated. Besides one column per objective, the column
`front` scores reaching the Pareto front (Optuna's multi-objective target: non-domination rank).
The target region is the best max(10%, 3 trials) of the completed trials, so a small study
still compares a few good trials rather than one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from ..schema.paths import field_name

__all__ = ["Importances", "param_importances", "MIN_TRIALS"]

# Below this many completed trials, importances say nothing; the report says so instead.
MIN_TRIALS = 5


@dataclass
class Importances:
    """`table`: one row per parameter (named by its field: `architecture.skip.combine`), one
    column per objective (and `front`), values sum to 1 per column, rows sorted by the first
    objective. `note` explains an empty table."""

    table: pd.DataFrame
    evaluator: str
    trials: int
    note: str = ""
    failures: dict[str, str] = field(default_factory=dict)

    def top(self, column: str, k: int = 3) -> list[tuple[str, float]]:
        if self.table.empty or column not in self.table.columns:
            return []
        ranked = self.table[column].dropna().sort_values(ascending=False).head(k)
        return list(ranked.items())


def param_importances(study, objectives: Sequence[str], directions: Sequence[str]) -> Importances:
    """PED-ANOVA importances of the study's parameters for each objective and for the front."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    evaluator_name = "PED-ANOVA"
    if len(completed) < MIN_TRIALS:
        return Importances(pd.DataFrame(), evaluator_name, len(completed),
                           note=f"not enough completed trials ({len(completed)}; importances need at least {MIN_TRIALS})")
    params = sorted({name for t in completed for name in t.params})
    if not params:
        return Importances(pd.DataFrame(), evaluator_name, len(completed), note="the study searched no parameter")
    quantile = min(0.5, max(0.1, 3 / len(completed)))
    columns: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    targets = [(name, _target(i, d)) for i, (name, d) in enumerate(zip(objectives, directions))]
    if len(objectives) > 1:
        targets.append(("front", None))
    for name, target in targets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "importances will be equal" and experimental warnings
                columns[name] = optuna.importance.get_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile), params=params, target=target)
        except Exception as exc:  # noqa: BLE001 - a report section, not a reason to fail the report
            failures[name] = f"{type(exc).__name__}: {exc}"
    table = pd.DataFrame(columns).reindex(params).fillna(0.0) if columns else pd.DataFrame()
    if not table.empty:
        table = table.sort_values(table.columns[0], ascending=False)
        table.index = table.index.map(field_name)  # a version-1 study's parameters by their field's name
        table.index.name = "parameter"
    note = "" if not table.empty else "importances could not be computed: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
    return Importances(table, evaluator_name, len(completed), note=note, failures=failures)


def _target(index: int, direction: str):
    if direction == "maximize":
        return lambda t: -t.values[index]
    return lambda t: t.values[index]

"""Early stopping inside a study: the rung records trials leave in the storage, and the stop
decision a trial takes from the others' (the rule itself is archsearch.search.stopping; what a
study records is listed there too).

    stopper = RungStopper.for_trial(trial, space, train_cfg)       # None under stopping: none
    run_trial(..., eval_steps=stopper.steps, on_eval=stopper)      # True at a rung: stop there
    stopper.decision, stopper.stop_attrs(), stopper.constraints    # what a stopped trial records

At each rung step the trial, evaluated under the fixed-noise protocol of its final score:

1. makes its vector: the rung's validation loss and every other objective as measured before
   training (the schema refuses objectives and constraints that are only known once training
   ends), and its total constraint violation, constraints on val_loss taking the rung's value;
   a sample-quality objective (`fd`, ...) takes the rung's validation loss too (minimized), since
   sampling at every rung would cost many times the training, and a constraint on one waits
   for the end;
2. writes its own record, the user attribute `rung_<k>`, to the storage, *first*;
3. reads the records at rung k of the study's other RUNNING, COMPLETE and PRUNED trials (every
   worker on every machine writes to the same storage), in trial-number order;
4. asks `should_stop`, and stops when told to.

Writing before reading means that of two trials reaching a rung at the same moment, the one
that reads last sees the other: both may see each other, neither can miss the other. Failed
trials (diverged, out of memory, interrupted, dead workers) do not count; their retries write
their own records. A storage that stays down while a record is written or read gives no
decision at that rung: the trial trains on, as under Optuna's pruners.

With one objective the rung's loss is also reported to Optuna (`trial.report`), so that TPE
ranks stopped trials by how far they got and their last loss; Optuna 5 refuses `report` in
multi-objective studies (see the stopping module for what its samplers make of those).

Torch-free, and Optuna is only used through the trial it is given: the results table and the
report read the records with `rung_records`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..metrics import METRICS
from ..schema.study import constraint_violations
from .stopping import StopDecision, rung_steps, should_stop, total_violation
from .storage import is_transient

__all__ = ["RungRecord", "RungStopper", "rung_attr", "rung_records", "rung_losses", "rung_loss_column",
           "rung_loss_columns"]

RUNG_PREFIX = "rung_"
RUNG_LOSS_PREFIX = "val_loss_at_"


def rung_attr(k: int) -> str:
    """The user attribute of a trial's record at rung k: `rung_0`, `rung_1`, ..."""
    return f"{RUNG_PREFIX}{k}"


def rung_loss_column(step: int) -> str:
    """The results-table column of the validation loss at a rung step: `val_loss_at_60`."""
    return f"{RUNG_LOSS_PREFIX}{step}"


def rung_loss_columns(columns: Iterable[str]) -> list[str]:
    """The rung-loss columns among `columns`, by step."""
    found = [c for c in columns if c.startswith(RUNG_LOSS_PREFIX) and c[len(RUNG_LOSS_PREFIX):].isdigit()]
    return sorted(found, key=lambda c: int(c[len(RUNG_LOSS_PREFIX):]))


@dataclass(frozen=True)
class RungRecord:
    """A trial's vector at one rung, as stored (`to_attr`): the objectives in the study's order
    (NaN where not measured, which ranks worst) and the total violation (inf: unmeasured)."""

    step: int
    values: tuple[float, ...]
    violation: float

    def to_attr(self) -> dict[str, Any]:
        """JSON for the storage: non-finite numbers as null (JSON has no NaN)."""
        return {"step": self.step, "values": [v if math.isfinite(v) else None for v in self.values],
                "violation": self.violation if math.isfinite(self.violation) else None}

    @classmethod
    def from_attr(cls, value: Any) -> RungRecord | None:
        """The record `to_attr` wrote; None for anything else (a user's own `rung_x` attribute)."""
        try:
            values = tuple(math.nan if v is None else float(v) for v in value["values"])
            violation = value.get("violation")
            return cls(int(value["step"]), values, math.inf if violation is None else float(violation))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def rung_records(attrs: Mapping[str, Any]) -> dict[int, RungRecord]:
    """A trial's rung records by rung k, from its user attributes, lowest rung first."""
    found = {}
    for key, value in attrs.items():
        if key.startswith(RUNG_PREFIX) and key[len(RUNG_PREFIX):].isdigit():
            record = RungRecord.from_attr(value)
            if record is not None:
                found[int(key[len(RUNG_PREFIX):])] = record
    return dict(sorted(found.items()))


def rung_losses(attrs: Mapping[str, Any], objectives: list[str]) -> dict[str, float]:
    """{`val_loss_at_<step>`: loss} of a trial's rung records, in a study whose objectives (in
    order) are `objectives`; empty when neither val_loss nor a quality metric (for which the
    rung's loss stands in) is one of them."""
    slots = [i for i, name in enumerate(objectives) if name == "val_loss" or (name in METRICS and METRICS[name].quality)]
    if not slots:
        return {}
    i = slots[0]
    return {rung_loss_column(r.step): r.values[i] for r in rung_records(attrs).values() if len(r.values) == len(objectives)}


class RungStopper:
    """The `on_eval(step, result, metrics)` of one trial under `study.stopping: asha` (see the
    module docstring); it ignores evaluations between rungs."""

    def __init__(self, trial, space, train_cfg):
        self.trial, self.space, self.cfg = trial, space, space.study.stopping
        self.steps = rung_steps(self.cfg.min_steps, self.cfg.eta, train_cfg.steps)
        # A quality objective (fd, ...) is not measured at a rung: sampling there would cost many
        # times the training. The rung's val_loss stands in for it, lower being better.
        self.stand_in = [METRICS[o.metric].quality for o in space.objectives]
        self.directions = ["minimize" if q else o.direction for o, q in zip(space.objectives, self.stand_in)]
        self.records: dict[int, RungRecord] = {}  # those this trial wrote, by rung
        self.decision: StopDecision | None = None  # set when it stopped the trial
        self.constraints: dict[str, float] = {}    # the constraints at the rung it stopped at

    @classmethod
    def for_trial(cls, trial, space, train_cfg) -> RungStopper | None:
        return cls(trial, space, train_cfg) if space.study.stopping.kind == "asha" else None

    def __call__(self, step: int, result, metrics) -> bool:
        if step not in self.steps:
            return False
        k = self.steps.index(step)
        measured = {**metrics.to_dict(), "val_loss": result.val_loss}
        values = tuple(result.val_loss if q else math.nan if measured.get(o.metric) is None else float(measured[o.metric])
                       for o, q in zip(self.space.objectives, self.stand_in))
        # A constraint on a quality metric is judged once it is measured, at the end.
        constraints = constraint_violations([c for c in self.space.constraints if not METRICS[c.metric].quality],
                                            measured)
        record = self.records[k] = RungRecord(step, values, total_violation(constraints.values()))
        try:
            self.trial.set_user_attr(rung_attr(k), record.to_attr())  # before reading: see the module docstring
            others = self._others(k, step)
            if len(self.directions) == 1:
                self.trial.report(result.val_loss, step)
        except Exception as exc:  # a storage that is down: no decision, so train on rather than lose the run
            if not is_transient(exc):
                raise
            return False
        decision = should_stop(values, [r.values for r in others], self.directions, self.cfg.eta,
                               self.cfg.min_trials_at_rung, candidate_violation=record.violation,
                               rung_violations=[r.violation for r in others], rung=k, step=step)
        if decision.stop:
            self.decision, self.constraints = decision, constraints
        return decision.stop

    def _others(self, k: int, step: int) -> list[RungRecord]:
        """The records at rung k of the study's other trials that count, by trial number."""
        from optuna.trial import TrialState

        states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        found = []
        for t in self.trial.study.get_trials(deepcopy=False, states=states):
            record = RungRecord.from_attr(t.user_attrs.get(rung_attr(k))) if t.number != self.trial.number else None
            if record is not None and record.step == step and len(record.values) == len(self.directions):
                found.append(record)
        return found

    def rung_attrs(self) -> dict[str, Any]:
        """The records this trial wrote, as user attributes (for its metrics.json)."""
        return {rung_attr(k): r.to_attr() for k, r in self.records.items()}

    def stop_attrs(self) -> dict[str, Any]:
        """What a stopped trial records besides its rung records (see the stopping module)."""
        d = self.decision
        if d is None:
            return {}
        return {"stopped_at_step": d.step, "stopped_rung": d.rung, "rung_vector": self.records[d.rung].to_attr()["values"],
                "stop_reason": d.reason}

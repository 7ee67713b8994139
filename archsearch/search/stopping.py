"""Pareto-aware early stopping: the MO-ASHA rule that stops a hopeless trial at a rung.

Pure and torch-free (numpy only); it knows no Optuna, no storage and no training. The search
layer evaluates a trial at each rung, reads the vectors of every trial that reached the same rung
from the study's storage, and asks:

    for rung, step in enumerate(rung_steps(20, 3, total_steps=300)):   # steps 20, 60, 180
        ...train to `step`, evaluate...
        decision = should_stop(vector, others_at_rung, ["minimize", "maximize"], eta=3,
                               min_trials_at_rung=3, rung=rung, step=step)
        if decision.stop:
            ...record decision.as_attrs(), end the trial as PRUNED...

The rule (asynchronous successive halving, ASHA, with a multi-objective ordering: MO-ASHA,
Schmucker et al., "Multi-objective multi-fidelity hyperparameter optimization with application
to fairness", 2021):

- **Rungs** are at `min_steps * eta**k` training steps, k = 0, 1, ..., strictly below the
  trial's full budget (`rung_steps`).
- **The rung's vectors**: one per trial that reached the rung (the candidate included), each the
  trial's objectives at that point: the validation loss at the rung step, the other objectives
  as measured. Directions say which way each objective is better.
- **Feasibility first**: a vector whose trial violates a constraint (total violation > 0, the
  sum of positive constraint values as Optuna counts it) ranks after every feasible one, the
  infeasible ones by total violation, smallest first. An infeasible trial is not kept alive for
  its loss.
- **Fronts**: the feasible vectors are sorted into non-dominated fronts (front 0: dominated by
  none; front 1: dominated only by front 0; ...). Vector a dominates b when it is at least as good
  in every objective and better in one.
- **Within a front**, larger crowding distance first (NSGA-II's, Deb et al. 2002): each
  objective is normalized to [0, 1] over the feasible vectors of the rung (min-max, so units and
  scales do not matter), and a vector's distance is the sum over objectives of the gap between
  its two neighbours in the front along that objective; the extreme vectors of each objective
  get an infinite distance.
- **The decision**: with the candidate at 0-based position `p` of that order among the `n`
  vectors, it is stopped when `n >= min_trials_at_rung` and `p / n >= 1 / eta`, i.e. only the
  top `ceil(n / eta)` go on. ASHA is asynchronous: nobody waits for a rung to fill; a trial is
  judged against whoever got there before it (so early trials are judged leniently, which is
  what `min_trials_at_rung` bounds from below).

Ties are deterministic, by arrival: the order of `rung_vectors` is the order trials reached the
rung (earliest first) and the candidate comes last. Vectors of one front with equal crowding
distance keep that order; identical vectors get identical crowding distances (the distance is
computed over the distinct vectors of a front), so a newcomer identical to an earlier trial
ranks right after it. With one objective the rule is plain ASHA: fronts are the distinct values,
best first.

A known pitfall, avoided and pinned by a test: Syne Tune's MOASHA (its `NonDominatedPriority`)
returns the *ordering* of its non-dominated sort (the indices, best first) where a per-point
priority is expected, so the priority of point i is the index of the i-th best point. With a rung
holding (5, 5), (0, 0), (1, 1) (both minimized) the newcomer (4, 4) gets priority 0 and
survives, though it is third of four and dominated twice; here it is stopped (p = 2, n = 4,
eta = 3: 2/4 >= 1/3). Syne Tune also breaks ties within a front by an epsilon-net instead of
crowding distance.

Cost: O(n^2 m) time and O(n^2) memory for n vectors of m objectives (a domination matrix), plus
O(n m log n) for the crowding; a few thousand vectors take well under a second.

**In a study** (`study.stopping: {kind: asha, min_steps, eta, min_trials_at_rung}`;
archsearch.search.rungs applies the rule, archsearch.search.objective records the outcome).
Rungs are training steps, the same for every trial (one whose `train.seconds` budget ends first
is not judged at the rungs it does not reach). Every trial that reaches a rung leaves its
record, whatever happens to it afterwards; all are user attributes of the Optuna trial (JSON;
also in `trials/<n>/metrics.json`):

    rung_<k>         {"step": 60, "values": [0.081, 1520.3], "violation": 0.0}
                     at rung k (step min_steps * eta**k): the objectives in the study's order
                     (its `objectives` user attribute; val_loss at the rung step, the others as
                     measured before training), null where not measured; the total constraint
                     violation (0: feasible; null: a constraint's metric was not measured)
    learning_curve   [[step, val_loss], ...]: the rung evaluations among the curve points

A trial stopped at a rung ends as Optuna's PRUNED, with `outcome: "pruned"`, its constraints as
they stood at the rung, no `val_loss` (it has no final score) and:

    stopped_at_step  60                     the rung's step (= its `steps_trained`)
    stopped_rung     1                      k
    rung_vector      [0.081, 1520.3]        the values of its `rung_<k>`
    stop_reason      "stopped at rung 1 (step 60): position 3 of 4 at this rung (keeps the top 2)"

(A trial stopped by Optuna's pruner in a single-objective study records `stopped_at_step` and a
`stop_reason` of `pruned by study.pruner (median) at step 40`.) The results table
(archsearch.results) shows `steps_trained`, the rung losses as `val_loss_at_<step>` columns
(`val_loss_at_20`, `val_loss_at_60`, ...), `stopped_rung`, `stopped_at_step` and `stop_reason`;
the Pareto front stays over COMPLETE trials.

**What the samplers make of stopped trials** (Optuna 5.0; `trial.report` raises in
multi-objective studies, so a stopped trial there has no values and no intermediate values):
- TPE counts them in its history and puts them in the "bad" group: completed trials fill its
  good group (non-dominated sort), then pruned ones, which multi-objective TPE cannot tell apart
  (without intermediate values all score alike), so only while fewer trials have completed than
  the good group holds (ceil(n/10) of n trials) do the earliest stopped trials fill it. Stopped
  trials that violate their constraints at the rung are ranked with the infeasible, by violation.
  With constant_liar, running trials are bad points too. In a single-objective study the rung's
  loss is also reported (`trial.report`), and TPE ranks stopped trials by the step they reached,
  then by that loss.
- NSGA-II (and the GP sampler) learn only from COMPLETE trials: a stopped trial is never a
  parent and does not count towards a generation, which fills at the pace of completed trials.
- Random, QMC and grid samplers do not look at results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["StopDecision", "rung_steps", "rank", "should_stop", "total_violation"]

Direction = Literal["minimize", "maximize"]


def rung_steps(min_steps: int, eta: int, total_steps: int) -> list[int]:
    """The rung steps `min_steps * eta**k` strictly below `total_steps` (empty when none is)."""
    if min_steps < 1:
        raise ValueError(f"min_steps must be at least 1, not {min_steps}")
    if eta < 2:
        raise ValueError(f"eta must be at least 2, not {eta}")
    steps, step = [], min_steps
    while step < total_steps:
        steps.append(step)
        step *= eta
    return steps


def total_violation(constraints: Iterable[float]) -> float:
    """Optuna's measure of infeasibility: the sum of the positive constraint values (a constraint
    is satisfied when its value is <= 0); 0 means feasible. A NaN counts as infinitely violated."""
    return float(sum(math.inf if math.isnan(v) else v for v in map(float, constraints) if not v <= 0))


@dataclass(frozen=True)
class StopDecision:
    """What `should_stop` decided about one trial at one rung, and why."""

    stop: bool
    position: int          # the candidate's 0-based place in the rung's order (p of the rule)
    n: int                 # vectors at the rung, the candidate included
    kept: int              # how many of the n go on: ceil(n / eta)
    rung: int | None       # k of the rung step min_steps * eta**k, when the caller said
    step: int | None       # the rung's training step, when the caller said
    feasible: bool         # the candidate satisfies its constraints
    reason: str            # one line for a user: `stopped at rung 2 (step 180): position 7 of 9 ...`

    def as_attrs(self) -> dict[str, Any]:
        """The decision as JSON-ready values (for a trial's user attributes)."""
        return asdict(self)


def rank(
    vectors: Sequence[Sequence[float]],
    directions: Sequence[Direction],
    violations: Sequence[float] | None = None,
) -> list[int]:
    """The indices of `vectors`, best first, by the rule of this module: feasible before
    infeasible, then non-dominated front, then crowding distance (larger first), then index.

    `violations` are the vectors' total constraint violations (0 = feasible; see
    `total_violation`); None means all feasible. Non-finite objective values count as the worst.
    """
    points = _oriented(vectors, directions)
    n = len(points)
    if violations is None:
        violation = np.zeros(n)
    else:
        if len(violations) != n:
            raise ValueError(f"{len(violations)} violations for {n} vectors")
        violation = np.array([math.inf if math.isnan(v) else max(float(v), 0.0) for v in violations])
    feasible = np.flatnonzero(violation <= 0)
    infeasible = np.flatnonzero(violation > 0)
    order = [int(feasible[i]) for i in _pareto_order(points[feasible])]
    order += sorted((int(i) for i in infeasible), key=lambda i: (violation[i], i))
    return order


def should_stop(
    candidate: Sequence[float],
    rung_vectors: Sequence[Sequence[float]],
    directions: Sequence[Direction],
    eta: int,
    min_trials_at_rung: int,
    *,
    candidate_violation: float = 0.0,
    rung_violations: Sequence[float] | None = None,
    rung: int | None = None,
    step: int | None = None,
) -> StopDecision:
    """Whether the trial that just reached a rung with `candidate` should stop there.

    `rung_vectors` are the vectors of the other trials at the rung, in the order they got there
    (earliest first; the candidate ranks after any identical one). `candidate_violation` and
    `rung_violations` are total constraint violations (0 = feasible). `rung` and `step` only
    name the rung in the reason.
    """
    if eta < 2:
        raise ValueError(f"eta must be at least 2, not {eta}")
    if min_trials_at_rung < 1:
        raise ValueError(f"min_trials_at_rung must be at least 1, not {min_trials_at_rung}")
    vectors = [*rung_vectors, candidate]
    violations = None
    if rung_violations is not None or candidate_violation:
        others = [0.0] * len(rung_vectors) if rung_violations is None else list(rung_violations)
        if len(others) != len(rung_vectors):
            raise ValueError(f"{len(others)} rung violations for {len(rung_vectors)} rung vectors")
        violations = [*others, candidate_violation]
    n = len(vectors)
    position = rank(vectors, directions, violations).index(n - 1)
    kept = -(-n // eta)
    stop = n >= min_trials_at_rung and position * eta >= n  # p / n >= 1 / eta, in integers
    feasible = total_violation([candidate_violation]) == 0
    return StopDecision(stop, position, n, kept, rung, step, feasible,
                        _reason(stop, position, n, kept, min_trials_at_rung, rung, step, candidate_violation))


def _reason(stop, position, n, kept, min_trials, rung, step, violation) -> str:
    if rung is not None:
        where = f"rung {rung}" + (f" (step {step})" if step is not None else "")
    else:
        where = f"step {step}" if step is not None else "this rung"
    verb = "stopped" if stop else "kept"
    if n < min_trials:
        return f"{verb} at {where}: {n} of the {min_trials} trials needed before this rung stops any"
    text = f"{verb} at {where}: position {position + 1} of {n} at this rung (keeps the top {kept})"
    if not violation <= 0:
        text += f"; it violates its constraints by {violation:g}"
    return text


def _oriented(vectors: Sequence[Sequence[float]], directions: Sequence[Direction]) -> np.ndarray:
    """An n x m array in which every objective is minimized and non-finite values are +inf."""
    unknown = [d for d in directions if d not in ("minimize", "maximize")]
    if unknown:
        raise ValueError(f"unknown direction {unknown[0]!r}; use minimize or maximize")
    m = len(directions)
    if m == 0:
        raise ValueError("no objectives")
    for vector in vectors:
        if len(vector) != m:
            raise ValueError(f"a vector of {len(vector)} values for {m} objectives: {list(vector)!r}")
    points = np.array(vectors, dtype=float).reshape(len(vectors), m)
    points *= np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    points[~np.isfinite(points)] = math.inf  # NaN or an infinity is a failed measurement: the worst
    return points


def _pareto_order(points: np.ndarray) -> list[int]:
    """Row indices of `points` (all minimized) by front, then crowding distance, then index."""
    scaled = _normalized(points)
    order: list[int] = []
    for front in _fronts(points):
        distance = _crowding(scaled[front])
        order += [front[j] for j in sorted(range(len(front)), key=lambda j: (-distance[j], front[j]))]
    return order


def _fronts(points: np.ndarray) -> list[list[int]]:
    """Non-dominated fronts, each a list of row indices in increasing order."""
    n = len(points)
    no_worse = np.ones((n, n), dtype=bool)
    better = np.zeros((n, n), dtype=bool)
    for column in points.T:
        no_worse &= column[:, None] <= column[None, :]
        better |= column[:, None] < column[None, :]
    dominates = no_worse & better             # [i, j]: i dominates j
    dominated_by = dominates.sum(axis=0)      # how many dominate j
    remaining = np.ones(n, dtype=bool)
    fronts = []
    while remaining.any():
        front = np.flatnonzero(remaining & (dominated_by == 0))
        fronts.append(front.tolist())
        remaining[front] = False
        dominated_by -= dominates[front].sum(axis=0)
    return fronts


def _normalized(points: np.ndarray) -> np.ndarray:
    """Each column min-max scaled over its finite values to [0, 1] (+inf stays +inf)."""
    out = points.copy()
    for k, column in enumerate(points.T):
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            continue
        low, high = finite.min(), finite.max()
        out[:, k] = (column - low) / (high - low if high > low else 1.0)
    return out


def _crowding(front: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front, computed over its distinct rows so
    that identical rows share one distance."""
    distinct, inverse = np.unique(front, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    distance = np.zeros(len(distinct))
    if len(distinct) <= 2:
        distance[:] = math.inf
        return distance[inverse]
    for column in distinct.T:
        by_value = np.argsort(column, kind="stable")
        values = column[by_value]
        distance[by_value[0]] = distance[by_value[-1]] = math.inf
        with np.errstate(invalid="ignore"):
            gaps = values[2:] - values[:-2]
        distance[by_value[1:-1]] += np.nan_to_num(gaps, nan=0.0, posinf=math.inf)  # inf - inf: no gap
    return distance[inverse]

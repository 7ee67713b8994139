"""Hypervolume of a Pareto front, its reference point, and its history over a study's trials.

Everything here works on *costs*: objective values with maximized objectives negated, so every
objective is minimized. The hypervolume of a set of points is the volume of the region they
dominate, bounded by a reference point that every point must beat:

    hypervolume([[1, 3], [2, 1]], ref=[4, 4])  ==  (4-1)*(4-3) + (4-2)*(3-1) == 7

Two objectives are computed exactly by a sweep; three or more by slicing along the last
objective and recursing (Hypervolume by Slicing Objectives, exact, fine for the small fronts of
an architecture search). The report normalizes costs to [0, 1] per objective (`Scale`), so the
volume has no units and studies compared with the same `Scale` are compared on the same box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..pareto import pareto_mask

__all__ = ["to_costs", "hypervolume", "Scale", "reference_scale", "hypervolume_history"]

# The reference point lies this fraction of each objective's range beyond its worst value, so
# the extreme members of the front still add volume.
REFERENCE_MARGIN = 0.1


def to_costs(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Objective values (n, k) as costs: maximized columns negated."""
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs


def hypervolume(costs: np.ndarray, ref: Sequence[float]) -> float:
    """Exact volume dominated by `costs` (n, k) and bounded by `ref` (k,); all minimized.

    Points that do not beat `ref` in every objective, and rows with a NaN, add nothing.
    """
    ref = np.asarray(ref, dtype=float)
    points = np.asarray(costs, dtype=float).reshape(-1, len(ref))
    points = points[np.isfinite(points).all(axis=1) & (points < ref).all(axis=1)]
    if len(points) == 0:
        return 0.0
    points = points[pareto_mask(points, ["minimize"] * len(ref))]
    return float(_hv(np.unique(points, axis=0), ref))


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    k = points.shape[1]
    if k == 1:
        return float(ref[0] - points[:, 0].min())
    if k == 2:
        return _hv2(points, ref)
    # Slice along the last objective: between consecutive values z_i < z_{i+1}, the dominated
    # region's cross-section is the (k-1)-dimensional volume of the points with z <= z_i.
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    z = np.append(points[:, -1], ref[-1])
    total = 0.0
    for i in range(len(points)):
        depth = z[i + 1] - z[i]
        if depth > 0:
            head = points[: i + 1, :-1]
            head = head[pareto_mask(head, ["minimize"] * (k - 1))]
            total += depth * _hv(np.unique(head, axis=0), ref[:-1])
    return total


def _hv2(points: np.ndarray, ref: np.ndarray) -> float:
    # Sweep by the first objective; each point adds the strip between it and the best second
    # objective seen so far.
    order = np.lexsort((points[:, 1], points[:, 0]))
    total, best_y = 0.0, ref[1]
    for x, y in points[order]:
        if y < best_y:
            total += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(total)


@dataclass(frozen=True)
class Scale:
    """Per-objective min-max normalization of costs, and the reference point in those units.

    `lo` and `hi` are the best and worst cost of each objective over every completed trial of
    the compared studies; normalized costs run from 0 (best) to 1 (worst), and the reference
    point is 1 + REFERENCE_MARGIN in each. `reference_values` gives it in the objectives' own
    units and signs, for the report to state.
    """

    lo: np.ndarray
    hi: np.ndarray
    directions: tuple[str, ...]

    def normalize(self, costs: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (np.asarray(costs, dtype=float) - self.lo) / span

    @property
    def reference(self) -> np.ndarray:
        return np.full(len(self.lo), 1.0 + REFERENCE_MARGIN)

    @property
    def reference_values(self) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        costs = self.hi + REFERENCE_MARGIN * span
        return to_costs(costs, self.directions)[0]  # negating twice gives back the maximized values

    def hypervolume(self, values: np.ndarray) -> float:
        """Normalized hypervolume of objective values (n, k) (not costs)."""
        return hypervolume(self.normalize(to_costs(values, self.directions)), self.reference)


def reference_scale(value_sets: Sequence[np.ndarray], directions: Sequence[str]) -> Scale | None:
    """The `Scale` spanning every finite row of every (n, k) array; None when there is none."""
    costs = [to_costs(v, directions) for v in value_sets]
    rows = np.concatenate(costs) if costs else np.empty((0, len(directions)))
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) == 0:
        return None
    return Scale(rows.min(axis=0), rows.max(axis=0), tuple(directions))


def hypervolume_history(values: np.ndarray, scale: Scale) -> np.ndarray:
    """Normalized hypervolume of the front of rows 0..n, for every n (rows in trial order).

    A row with a NaN (a failed or infeasible trial) leaves the volume unchanged.
    """
    values = np.asarray(values, dtype=float).reshape(-1, len(scale.lo))
    costs = scale.normalize(to_costs(values, scale.directions))
    out = np.zeros(len(costs))
    front = np.empty((0, costs.shape[1]))
    current = 0.0
    for i, point in enumerate(costs):
        if np.isfinite(point).all() and not _dominated_or_equal(point, front):
            front = np.vstack([front[~_dominates(point, front)], point])
            current = hypervolume(front, scale.reference)
        out[i] = current
    return out


def _dominated_or_equal(point: np.ndarray, front: np.ndarray) -> bool:
    return bool(len(front)) and bool(np.any(np.all(front <= point, axis=1)))


def _dominates(point: np.ndarray, front: np.ndarray) -> np.ndarray:
    return np.all(point <= front, axis=1) & np.any(point < front, axis=1)

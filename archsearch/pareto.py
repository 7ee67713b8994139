"""Pareto fronts and knees: pure numpy/pandas, no torch, no plotting.

At the bottom of the layers (beside archsearch.metrics) because the study folder, the live
display, the report and the search's stopping rule all rank points by dominance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["pareto_mask", "pareto_front", "pareto_layers", "knee_index", "knee_point"]


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `values` (n, k) under `directions`.

    A row is dominated when another is at least as good in every objective and strictly better
    in one. Rows with a NaN are never on the front. Duplicated rows are all kept.

    In O(n · front size): the lexicographically smallest remaining row (all minimized) is never
    dominated by another remaining row, so it is on the front; it removes every row it dominates,
    and the next smallest remaining row follows. A row dominated by a removed one is dominated by
    whichever front row removed that one, so no removal is missed.
    """
    values = np.asarray(values, dtype=float)
    mask = np.zeros(len(values), dtype=bool)
    if values.size == 0:
        return mask
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    costs = values * signs  # everything minimized
    rows = np.flatnonzero(np.isfinite(costs).all(axis=1))
    rows = rows[np.lexsort(costs[rows].T[::-1])]  # by the first objective, then the next, ...
    while rows.size:
        best, rows = rows[0], rows[1:]
        mask[best] = True
        rest = costs[rows]
        dominated = np.all(rest >= costs[best], axis=1) & np.any(rest > costs[best], axis=1)
        rows = rows[~dominated]
    return mask


def pareto_layers(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated sorting: 1 for the rows of the front, 2 for the front once those are removed,
    and so on; 0 for rows with a NaN (never on any front)."""
    values = np.asarray(values, dtype=float)
    layers = np.zeros(len(values), dtype=int)
    left = np.isfinite(values).all(axis=1) if values.size else np.zeros(len(values), dtype=bool)
    layer = 0
    while left.any():
        layer += 1
        rows = np.flatnonzero(left)
        front = rows[pareto_mask(values[rows], directions)]
        layers[front] = layer
        left[front] = False
    return layers


def pareto_front(df: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]) -> pd.DataFrame:
    """The rows of `df` (completed, feasible trials) on the front, sorted by the first objective."""
    if df.empty:
        return df
    mask = pareto_mask(df[list(objectives)].to_numpy(dtype=float), directions)
    ascending = directions[0] == "minimize"
    return df[mask].sort_values(objectives[0], ascending=ascending)


def knee_index(values: np.ndarray, directions: Sequence[str]) -> int | None:
    """Row of `values` (n, k), a Pareto front, that is the knee: the best trade-off.

    Definition: min-max normalize each objective over the front's rows (0 = best value on the
    front, 1 = worst; an objective constant on the front counts 0), then pick the row nearest
    (Euclidean) to the ideal point (0, ..., 0). Ties go to the first row. None for no rows.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    costs = values.reshape(-1, len(signs)) * signs
    lo, hi = costs.min(axis=0), costs.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    distance = np.sqrt((((costs - lo) / span) ** 2).sum(axis=1))
    return int(np.argmin(distance))


def knee_point(front: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]) -> pd.Series | None:
    """The knee row of a front table (see `knee_index`), or None for an empty front."""
    if front.empty:
        return None
    index = knee_index(front[list(objectives)].to_numpy(dtype=float), directions)
    return front.iloc[index]

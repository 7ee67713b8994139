"""Pareto fronts of a results table: pure pandas/numpy, no torch, no plotting."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["pareto_mask", "pareto_front"]


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `values` (n, k) under `directions`.

    A row is dominated when another is at least as good in every objective and strictly better
    in one. Rows with a NaN are never on the front. Duplicated rows are all kept.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(len(values), dtype=bool)
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    costs = values * signs  # everything minimized
    finite = np.isfinite(costs).all(axis=1)
    mask = finite.copy()
    for i in np.flatnonzero(finite):
        others = costs[finite]
        dominated = np.any(np.all(others <= costs[i], axis=1) & np.any(others < costs[i], axis=1))
        mask[i] = not dominated
    return mask


def pareto_front(df: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]) -> pd.DataFrame:
    """The rows of `df` (completed, feasible trials) on the front, sorted by the first objective."""
    if df.empty:
        return df
    mask = pareto_mask(df[list(objectives)].to_numpy(dtype=float), directions)
    ascending = directions[0] == "minimize"
    return df[mask].sort_values(objectives[0], ascending=ascending)

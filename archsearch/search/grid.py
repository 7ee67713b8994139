"""The grid sampler's search space: every value of every distribution, by parameter name."""

from __future__ import annotations

from typing import Any

from ..schema.distributions import Choice, as_distribution
from ..schema.space import SearchSpace, walk_distributions

__all__ = ["grid_search_space"]


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """{parameter name: values} for Optuna's GridSampler (float ranges need a step; see load)."""
    grid: dict[str, list[Any]] = {}
    for prefix, tree in (("", space.architecture), ("train.", space.train)):
        for path, node in walk_distributions(tree):
            dist = as_distribution(node)
            grid[f"{prefix}{path}"] = dist.encoded() if isinstance(dist, Choice) else dist.values()
    return grid

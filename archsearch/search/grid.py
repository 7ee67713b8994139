"""The grid sampler's search space: every value of every distribution, by parameter name."""

from __future__ import annotations

from typing import Any

from ..schema.distributions import Choice, as_distribution
from ..schema.paths import FORMAT_VERSION, SECTIONS, param_name, qualified
from ..schema.space import SearchSpace, walk_distributions

__all__ = ["grid_search_space"]


def grid_search_space(space: SearchSpace, version: int = FORMAT_VERSION) -> dict[str, list[Any]]:
    """{parameter name: values} for Optuna's GridSampler (float ranges need a step; see load),
    named as a study of format `version` names them (the sampler asks for no other name)."""
    grid: dict[str, list[Any]] = {}
    for section in SECTIONS:
        for path, node in walk_distributions(getattr(space, section)):
            dist = as_distribution(node)
            grid[param_name(qualified(section, path), version)] = dist.encoded() if isinstance(dist, Choice) else dist.values()
    return grid

"""Which trials `archsearch verify` retrains, and how: the front, a spread of the dominated, budgets.

    picks = select_trials(df, objectives, directions, dominated=4)      # [Selected(3, "front"), ...]
    plan = retrain_plan(frozen_trials, picks, factor=10, steps=None, seeds=2)
    plan[0].space(space_data, "quickstart-verify", len(plan))           # the fixed space one retrain runs

**The front** is archsearch.results.front_of, the one rule for the front (completed, feasible, not
reused). **The dominated sample** is drawn from the other feasible candidates, deterministically
and spread from the best to the worst of them: they are ordered by Pareto layer (non-dominated
sorting: 2 is the front of what is left once the front is removed, 3 the next, ...), then by the
first objective, then by trial number, and `dominated` of them are taken at evenly spaced
positions of that order, the first and the last included (position round(i·(m−1)/(k−1)) for
i = 0..k−1, halves rounded up; one pick is the middle one). So the same table always gives the
same sample, and the sample covers both near-misses and clear losers, which is what a rank
correlation needs.

**Budgets.** Every picked trial is retrained with its own config and training settings (same
data, validation protocol, seed), for `factor` × its `train.steps` (rounded; or `steps`), with
a `train.seconds` budget scaled alike. With `seeds=2` it is also retrained at its original
budget with seed `train.seed + 1` (mod 2³²): how much the ranking moves with the seed alone is the noise
floor against which the long-budget change reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import ConfigError, ConfigErrors
from ..pareto import pareto_layers
from ..results import front_candidates, front_of
from ..schema._base import MAX_COUNT

__all__ = ["Selected", "Retrain", "select_trials", "spread_positions", "retrain_plan", "LONG", "SEED", "FRONT",
           "DOMINATED", "MAX_FACTOR"]

FRONT, DOMINATED = "front", "dominated"  # a retrain's role
LONG, SEED = "long", "seed"  # its budget: longer, or the original one with another seed
MAX_FACTOR = 1000  # beyond this a "verification" is a new study


@dataclass(frozen=True)
class Selected:
    number: int   # the source trial
    role: str     # FRONT or DOMINATED


def spread_positions(available: int, wanted: int) -> list[int]:
    """`wanted` evenly spaced positions in 0..available-1, both ends included (see the module docstring)."""
    if wanted <= 0 or available <= 0:
        return []
    if wanted >= available:
        return list(range(available))
    if wanted == 1:
        return [(available - 1) // 2]
    return [math.floor(i * (available - 1) / (wanted - 1) + 0.5) for i in range(wanted)]


def select_trials(df: pd.DataFrame, objectives: list[str], directions: list[str], dominated: int) -> list[Selected]:
    """The front (sorted by the first objective) and the dominated sample (in its order)."""
    front = front_of(df, objectives, directions)
    feasible = front_candidates(df, objectives)[1]
    rest = feasible.drop(index=front.index)
    layers = pareto_layers(rest[objectives].to_numpy(dtype=float), directions)
    first = rest[objectives[0]].astype(float) * (1 if directions[0] == "minimize" else -1)
    order = rest.assign(_layer=layers, _first=first.to_numpy()).sort_values(["_layer", "_first", "number"])
    picks = order.iloc[spread_positions(len(order), dominated)]
    return ([Selected(int(n), FRONT) for n in front["number"]]
            + [Selected(int(n), DOMINATED) for n in picks["number"]])


@dataclass(frozen=True)
class Retrain:
    """One training `archsearch verify` runs: a source trial's config under changed settings."""

    source_trial: int
    role: str
    budget: str                  # LONG or SEED
    config: dict[str, Any]       # the source trial's resolved UNetConfig
    train: dict[str, Any]        # its TrainConfig with the new steps (and seconds) or seed

    @property
    def key(self) -> tuple[int, str]:
        return self.source_trial, self.budget

    @property
    def label(self) -> str:
        what = f"{self.train['steps']} steps" if self.budget == LONG else f"seed {self.train['seed']}"
        return f"retrains #{self.source_trial}, {self.role}, {what}"

    def space(self, space_data: dict[str, Any], name: str, count: int):
        """The space without distributions that this retrain runs in the study `name` (of `count`
        retrains): the source space's data, validation, timing, objectives and constraints, its
        worker settings, no pruner and no early stopping."""
        from ..schema.space import space_from_dict

        kept = ("device", "max_retries", "heartbeat_interval", "grace_period", "seed")
        study = {k: v for k, v in (space_data.get("study") or {}).items() if k in kept}
        return space_from_dict({
            **{k: space_data[k] for k in ("data", "eval", "measure", "objectives", "constraints") if k in space_data},
            "study": {**study, "name": name, "trials": max(count, 1), "sampler": {"kind": "random"}},
            "train": self.train, "architecture": self.config,
        })

    def identity(self, space) -> tuple[str, str]:
        """(config hash, settings hash), as the trial that runs it will record them."""
        from ..schema.loading import unet_config_from_dict, validate_model
        from ..schema.paths import ARCHITECTURE, TRAIN
        from ..schema.train import TrainConfig
        from ..search.objective import config_hash, settings_hash

        config = unet_config_from_dict(self.config, prefix=ARCHITECTURE)
        return config_hash(config), settings_hash(validate_model(TrainConfig, self.train, TRAIN), space)


def retrain_plan(trials: dict[int, Any], picks: list[Selected], factor: float | None, steps: int | None,
                 seeds: int) -> list[Retrain]:
    """Every retrain of the picked trials (FrozenTrials by number): the long budget of each, then
    with `seeds=2` each at its own budget with the next seed. Raises ConfigErrors for a budget
    that is not longer than a trial's own."""
    errors: list[ConfigError] = []
    longs, others = [], []
    for pick in picks:
        attrs = trials[pick.number].user_attrs
        config, train = dict(attrs["config"]), dict(attrs["train"])
        short = int(train["steps"])
        long = steps if steps is not None else math.floor(short * factor + 0.5)
        if long <= short:
            where, given = ("--steps", f"{steps}") if steps is not None else ("--factor", f"{factor:g} × {short} = {long}")
            errors.append(ConfigError(where, f"{given} steps is not more than the {short} steps trial #{pick.number} "
                                             f"trained; give a longer budget"))
            continue
        if long > MAX_COUNT:
            errors.append(ConfigError("--steps" if steps is not None else "--factor",
                                      f"{long} steps for trial #{pick.number} exceeds {MAX_COUNT:.0e}"))
            continue
        scaled = {"steps": long}
        if train.get("seconds"):
            scaled["seconds"] = float(train["seconds"]) * long / short
        longs.append(Retrain(pick.number, pick.role, LONG, config, {**train, **scaled}))
        if seeds > 1:
            others.append(Retrain(pick.number, pick.role, SEED, config, {**train, "seed": (int(train.get("seed", 0)) + 1) % 2**32}))
    if errors:
        raise ConfigErrors(_first_per_option(errors))
    return longs + others


def _first_per_option(errors: list[ConfigError]) -> list[ConfigError]:
    """One line per option: the first trial that the budget does not lengthen, and how many more."""
    out = []
    for where in dict.fromkeys(e.path for e in errors):
        same = [e for e in errors if e.path == where]
        more = f" (and {len(same) - 1} more trials)" if len(same) > 1 else ""
        out.append(ConfigError(where, same[0].message + more))
    return out


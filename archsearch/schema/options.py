"""Numbers given on the command line, held to the bounds of the schema fields they stand for.

`--trials` is `study.trials` given another way, so it takes the values the field takes; an
option that stands for no field (`--workers`, `--scale`) says its own limits and where they come
from. The bounds are read from the schema, never written twice:

    Bound("study.trials").problem(10**20)
    # '100000000000000000000: must be at most 1000000000 (the limit of study.trials)'
    Bound("train.steps", low=0).problem(-1)     # '-1: must be at least 0'
    Bound(low=1, high=8, why="2 per CPU", unit="workers").problem(9)
    # '9 workers: must be at most 8 (2 per CPU)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Bound", "space_field_type"]


@dataclass(frozen=True)
class Bound:
    """The values of a numeric option: those of the space-file field `field` (`study.trials`,
    `train.steps`), or from `low` to `high` (inclusive) where it stands for none. `low` or
    `high` given with a field replaces that end of the field's range; `why` says where a limit
    that is not the field's comes from; `unit` names what the number counts."""

    field: str | None = None
    low: float | None = None
    high: float | None = None
    why: str = ""
    unit: str = ""

    def limits(self) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
        """(lower, upper): each (value, inclusive), or None for no limit."""
        from ._base import number_bounds

        low, high = number_bounds(space_field_type(self.field)) if self.field else (None, None)
        if self.low is not None:
            low = (self.low, True)
        if self.high is not None:
            high = (self.high, True)
        return low, high

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, or None."""
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        what = f"{shown} {self.unit}" if self.unit else shown
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{what}: expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{what}: must be a finite number"
        low, high = self.limits()
        if low is not None and (value < low[0] or (value == low[0] and not low[1])):
            return f"{what}: must be {'at least' if low[1] else 'above'} {_number(low[0])}"
        if high is not None and (value > high[0] or (value == high[0] and not high[1])):
            why = self.why or (f"the limit of {self.field}" if self.field and self.high is None else "")
            return f"{what}: must be {'at most' if high[1] else 'below'} {_number(high[0])}" + (f" ({why})" if why else "")
        return None


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def space_field_type(name: str):
    """The annotated type of a space file's field by its one name (`study.trials`, `train.steps`,
    `eval.samples.sampler.steps`, `architecture.levels.0.width`)."""
    from .paths import ARCHITECTURE, TRAIN
    from .space import SearchSpace, field_type
    from .train import TrainConfig
    from .unet import UNetConfig

    section, _, rest = name.partition(".")
    model = {TRAIN: TrainConfig, ARCHITECTURE: UNetConfig}.get(section)
    return field_type(model, rest) if model is not None else field_type(SearchSpace, name)

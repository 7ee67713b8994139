"""Search distributions as they are written in a space file.

Any architecture or training field may be given a distribution instead of a value:

    block.dropout:          {float: {low: 0.0, high: 0.3}}
    train.lr:               {float: {low: 1e-4, high: 3e-3, log: true}}
    levels.0.blocks:        {int: [1, 3]}                      # low and high, step 1
    skip.combine:           {choice: [concat, add]}
    compact.multipliers:    {choice: [[1, 2], [1, 2, 2]]}     # a choice may be any value

A mapping whose only key is `choice`, `int` or `float` is a distribution; no config field has
one of those names, so a real mapping is never mistaken for one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import ConfigError, ConfigErrors, excerpt
from ._base import Model, validate_model

# Range ends fit an int64 (what Optuna stores); the field a range sets bounds it further.
_INT64 = 2**63 - 1

__all__ = ["Choice", "IntRange", "FloatRange", "Distribution", "as_distribution", "is_distribution"]

_KEYS = ("choice", "int", "float")


class Choice(Model):
    kind: Literal["choice"] = "choice"
    choices: list[Any] = Field(min_length=1, description="The values to choose from.")

    def encoded(self) -> list[Any]:
        """Optuna categorical values: scalars as they are, lists and mappings as JSON text."""
        return [encode_choice(c) for c in self.choices]

    def candidates(self) -> list[Any]:
        return list(self.choices)


class IntRange(Model):
    kind: Literal["int"] = "int"
    low: int = Field(ge=-_INT64, le=_INT64)
    high: int = Field(ge=-_INT64, le=_INT64)
    step: int = Field(1, ge=1, le=_INT64)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log range needs low >= 1 and step 1")
        return self

    def candidates(self) -> list[int]:
        return [self.low, self.high]

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


class FloatRange(Model):
    kind: Literal["float"] = "float"
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        return self

    def candidates(self) -> list[float]:
        return [self.low, self.high]

    def values(self) -> list[float]:
        if self.step is None:
            raise ValueError("a float range without a step has no finite grid")
        n = int(round((self.high - self.low) / self.step))
        return [self.low + i * self.step for i in range(n + 1)]


Distribution = Choice | IntRange | FloatRange


def is_distribution(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _KEYS


def as_distribution(node: Any, where: str = "") -> Distribution:
    """Parse `{choice: [...]}`, `{int: [lo, hi]}`, `{int: {low, high, step, log}}`, `{float: ...}`.

    Raises ConfigErrors located under `where`, the distribution's path, on a malformed one
    (`levels.0.width.choice: List should have at least 1 item`, `train.lr.low: ...`).
    """
    (key, spec), = node.items()
    if key == "choice":
        try:
            return validate_model(Choice, {"choices": spec if isinstance(spec, list) else [spec]})
        except ConfigErrors as exc:  # the list the user wrote is `choice`, not the model's `choices`
            raise ConfigErrors(ConfigError(_join(where, "choice" + e.path[len("choices"):]), e.message)
                               for e in exc.errors) from None
    model = IntRange if key == "int" else FloatRange
    if isinstance(spec, list):
        if len(spec) != 2:
            raise ConfigErrors([ConfigError(where, f"write [low, high] or {{low: ..., high: ...}}, not {excerpt(spec)}")])
        spec = {"low": spec[0], "high": spec[1]}
    return validate_model(model, spec, where)


def _join(where: str, path: str) -> str:
    return f"{where}.{path}" if where else path


def encode_choice(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def decode_choice(dist: Choice, value: Any) -> Any:
    """The choice an Optuna categorical value stands for."""
    for choice in dist.choices:
        if encode_choice(choice) == value:
            return choice
    raise ValueError(f"{excerpt(value)} is not one of {excerpt(dist.choices, 200)}")

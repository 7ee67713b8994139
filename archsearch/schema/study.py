"""The `study`, `objectives` and `constraints` sections of a space file."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from ..errors import excerpt
from ..metrics import METRICS, OBJECTIVE_METRICS
from ._base import MAX_COUNT, MAX_SECONDS, Model, Seed, tagged_union

__all__ = [
    "StudyConfig",
    "Objective",
    "Constraint",
    "SamplerConfig",
    "PrunerConfig",
    "StoppingConfig",
    "DEFAULT_OBJECTIVES",
    "StudyName",
    "constraint_violations",
    "baseline_label",
]


def known_metric(value: str) -> str:
    if value not in OBJECTIVE_METRICS:
        raise ValueError(f"unknown metric {excerpt(value)}; choose one of {', '.join(OBJECTIVE_METRICS)}")
    return value


Metric = Annotated[str, AfterValidator(known_metric)]


# A study name names a folder (and a journal inside it): well below every file system's 255 bytes.
MAX_NAME_LENGTH = 100

_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")


def folder_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise ValueError("use letters, digits, '_', '-' and '.' (it names a folder)")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{len(value)} characters; use at most {MAX_NAME_LENGTH} (it names a folder)")
    return value


def device_name(value: str) -> str:
    if not _DEVICE.fullmatch(value.strip().lower()):
        raise ValueError("unknown device; use auto, cpu, cuda or cuda:N")
    return value.strip().lower()


StudyName = Annotated[str, AfterValidator(folder_name)]


def baseline_entry(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """A preset name as written; a U-Net config file read into its fields, `name:` the path as
    written (so the study folder's space.yaml holds what was trained, wherever the file goes);
    a mapping (`base:` + overrides, an optional `name:`) as written."""
    from .loading import PRESETS
    from .yaml_file import read_yaml
    from ..errors import ConfigErrors

    if isinstance(value, dict) or value in PRESETS:
        return value
    try:
        data = read_yaml(value)
    except ConfigErrors as exc:
        raise ValueError(f"not a preset ({', '.join(PRESETS)}) and not a readable U-Net config file: "
                         f"{exc.errors[0].message}") from None
    return {"name": value, **{k: v for k, v in data.items() if k != "name"}}


def baseline_label(entry: str | dict[str, Any], index: int) -> str:
    """How tables and plots name a baseline: the preset or file as written, a mapping's `name`,
    else its base with `+` (overridden), else `baseline <index>`."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry.get("name"), str):
        return entry["name"]
    return f"{entry['base']}+" if isinstance(entry.get("base"), str) else f"baseline {index}"


def _baseline_kind(value: Any) -> Any:
    if not isinstance(value, (str, dict)):
        raise ValueError(f"expected a preset name, a U-Net config file or U-Net fields (base: PRESET + overrides)")
    return value


Baseline = Annotated[str | dict[str, Any], BeforeValidator(_baseline_kind), AfterValidator(baseline_entry)]
Device = Annotated[str, AfterValidator(device_name)]


class TPE(Model):
    kind: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(10, ge=0, le=MAX_COUNT, description="Random trials before TPE models the space.")
    multivariate: bool | None = Field(None, description="Joint TPE (Optuna default: on for one objective, off for several).")
    group: bool = Field(True, description="Model conditional parameter groups separately (needs multivariate).")
    constant_liar: bool = Field(True, description="Treat running trials as bad points (Optuna 5 default; matters with many workers).")


class NSGA2(Model):
    kind: Literal["nsga2"] = "nsga2"
    population_size: int = Field(50, ge=2, le=MAX_COUNT, description="Individuals per generation.")
    crossover_prob: float = Field(0.9, ge=0, le=1, description="Crossover probability.")
    mutation_prob: float | None = Field(None, ge=0, le=1, description="Mutation probability (default 1/params).")


class GP(Model):
    kind: Literal["gp"] = "gp"
    n_startup_trials: int = Field(10, ge=0, le=MAX_COUNT, description="Random trials before the Gaussian process is fitted.")


class RandomSampler(Model):
    kind: Literal["random"] = "random"


class Grid(Model):
    kind: Literal["grid"] = "grid"


class QMC(Model):
    kind: Literal["qmc"] = "qmc"
    qmc_type: Literal["sobol", "halton"] = Field("sobol", description="Low-discrepancy sequence.")
    scramble: bool = Field(True, description="Randomized (scrambled) sequence.")


SamplerConfig = tagged_union("tpe", TPE, NSGA2, GP, RandomSampler, Grid, QMC)


class NoPruner(Model):
    kind: Literal["none"] = "none"


class MedianPruner(Model):
    kind: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0, le=MAX_COUNT, description="Trials completed before pruning starts.")
    n_warmup_steps: int = Field(0, ge=0, le=MAX_COUNT, description="Training steps before a trial can be pruned.")


class PercentilePruner(Model):
    kind: Literal["percentile"] = "percentile"
    percentile: float = Field(25.0, gt=0, lt=100, description="Prune below this percentile of completed trials.")
    n_startup_trials: int = Field(5, ge=0, le=MAX_COUNT)
    n_warmup_steps: int = Field(0, ge=0, le=MAX_COUNT)


class HyperbandPruner(Model):
    kind: Literal["hyperband"] = "hyperband"
    reduction_factor: int = Field(3, ge=2, le=100)


PrunerConfig = tagged_union("none", NoPruner, MedianPruner, PercentilePruner, HyperbandPruner)


class NoStopping(Model):
    """Every trial trains for its whole budget (the default)."""

    kind: Literal["none"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _no_options(cls, data):
        # `stopping: {min_steps: 10}` without a kind is `kind: none` with asha's options: say so.
        if isinstance(data, dict):
            options = sorted(k for k in data if k != "kind")
            if options:
                raise ValueError(f"{', '.join(options)} {'is an option' if len(options) == 1 else 'are options'} "
                                 "of kind: asha; write kind: asha (kind: none, the default, takes no options)")
        return data


class AshaStopping(Model):
    """Pareto-aware asynchronous successive halving (MO-ASHA, archsearch.search.stopping).

    At each rung (`min_steps * eta**k` training steps, below `train.steps`) a trial is ranked
    among every trial that reached the rung, by non-dominated front then crowding distance over
    all objectives (validation loss at the rung, the others as measured before training);
    it is stopped unless it is in the top 1/eta, once `min_trials_at_rung` trials are there.
    With one objective this is plain ASHA on the validation loss.
    """

    kind: Literal["asha"] = "asha"
    min_steps: int = Field(20, ge=1, le=MAX_COUNT, description="Training steps of the first rung; must be below train.steps.")
    eta: int = Field(3, ge=2, le=100, description="Rungs at min_steps * eta**k steps; each keeps the top 1/eta of the trials there.")
    min_trials_at_rung: int = Field(
        3, ge=1, le=MAX_COUNT, description="Trials that must have reached a rung before it stops any; the first ones there go on."
    )


StoppingConfig = tagged_union("none", NoStopping, AshaStopping)


class StudyConfig(Model):
    """How many trials, how to pick them, and where the study is kept."""

    name: StudyName = Field("study", description="Study name; the study folder is <results-dir>/<name>.")
    trials: int = Field(20, ge=1, le=MAX_COUNT, description="Trials in the whole study (all workers together).")
    timeout: float | None = Field(None, gt=0, le=MAX_SECONDS, description="Stop starting trials after this many seconds.")
    sampler: SamplerConfig = Field(default_factory=TPE, description="Optuna sampler and its options.")
    pruner: PrunerConfig = Field(default_factory=NoPruner, description="Optuna pruner (single-objective studies only).")
    stopping: StoppingConfig = Field(
        default_factory=NoStopping, description="Early stopping of hopeless trials at rungs (any number of objectives)."
    )
    checkpoints: Literal["none", "front", "all"] = Field(
        "front", description="Which completed trials keep their final weights (the EMA weights when EMA is on) as "
        "trials/<n>/checkpoint.pt: none; front (a checkpoint is deleted when its trial leaves the Pareto front, so "
        "disk use stays bounded); all.",
    )
    baselines: list[Baseline] = Field(
        default_factory=list, description="Hand-designed networks trained and measured by the study's own protocol "
        "(its train, eval and measure settings) as fixed trials of the study <name>-baselines in the same storage, after "
        "the search's trials: never counted toward `trials`, never seen by the sampler; the report draws them on the "
        "front. Each is a preset name (seed), a U-Net config file, or U-Net fields (`base: PRESET` + overrides, and an "
        "optional `name:` for tables and plots), at the data's image size and channels.",
    )
    seed: Seed = Field(0, description="Seed of the sampler.")
    device: Device = Field("auto", description="auto, cpu, cuda or cuda:N.")
    max_retries: int = Field(1, ge=0, le=100, description="Times a trial whose worker died is retried with the same parameters.")
    heartbeat_interval: float = Field(
        10.0, gt=0, description="Seconds between a running trial's heartbeats (how workers see that it is alive)."
    )
    grace_period: float = Field(
        60.0, gt=0, description="A running trial without a heartbeat for this long belongs to a dead worker: it is "
        "failed and retried. Must exceed heartbeat_interval (several beats, so one slow write is not a death).",
    )

    @field_validator("grace_period")
    @classmethod
    def _grace_exceeds_heartbeat(cls, value: float, info: ValidationInfo) -> float:
        beat = info.data.get("heartbeat_interval")
        if beat is not None and value <= beat:
            raise ValueError(
                f"{value:g}s does not exceed heartbeat_interval ({beat:g}s): live trials would be taken for dead; "
                f"use at least {3 * beat:g}s"
            )
        return value

    @field_validator("baselines")
    @classmethod
    def _baseline_names_unique(cls, value: list) -> list:
        labels = [baseline_label(entry, i) for i, entry in enumerate(value)]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                raise ValueError(f"two baselines are named {excerpt(label)}; give one a `name:`")
        return value


class Objective(Model):
    metric: Metric = Field(description=f"One of {', '.join(OBJECTIVE_METRICS)}.")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default: the metric's natural direction.")

    @model_validator(mode="after")
    def _direction(self) -> Objective:
        if self.direction is None:
            object.__setattr__(self, "direction", METRICS[self.metric].direction)
        return self


# The speed normalized by the reference timed in turns with each trial: on a quiet 2-core machine
# benchmarks/load_robustness.py measured its median error under load at 6% (1 core busy) and 17%
# (2 of 2 busy) against 69% and 80% for the raw train_throughput (README, "How loss and speed are
# measured"). Studies keep the objectives they were created with.
DEFAULT_OBJECTIVES = [Objective(metric="val_loss"), Objective(metric="train_throughput_normalized")]

_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


class Constraint(Model):
    """`metric <= value` or `metric >= value`; written as that string in a space file."""

    metric: Metric = Field(description=f"One of {', '.join(OBJECTIVE_METRICS)}.")
    op: Literal["<=", ">="] = Field(description="<= (an upper bound) or >= (a lower bound).")
    value: float = Field(description="The bound.")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data):
        if isinstance(data, str):
            match = _CONSTRAINT.match(data)
            if not match:
                raise ValueError(f"{excerpt(data)} is not `metric <= value` or `metric >= value`")
            metric, op, value = match.groups()
            return {"metric": metric, "op": {"<": "<=", ">": ">="}.get(op, op), "value": value}
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        # The string form is the documented one; the object form is what it parses into.
        return {"anyOf": [{"type": "string", "pattern": _CONSTRAINT.pattern, "description": cls.__doc__.splitlines()[0]},
                          handler(core_schema)]}

    def violation(self, measured: float) -> float:
        """Optuna's convention: <= 0 when satisfied, the amount of violation otherwise."""
        return measured - self.value if self.op == "<=" else self.value - measured

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def constraint_violations(constraints: Iterable[Constraint], measured: Mapping[str, Any]) -> dict[str, float]:
    """Each constraint's violation, by its text (`params <= 5e+06`), from `measured` metric values;
    a metric that was not measured (None) violates its constraint infinitely."""
    out = {}
    for constraint in constraints:
        value = measured.get(constraint.metric)
        out[str(constraint)] = constraint.violation(float(value)) if value is not None else math.inf
    return out

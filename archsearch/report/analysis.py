"""Everything a report says about one or several studies, computed from their results tables.

    inputs = [load_study_input("results/quickstart")]
    report = analyze(inputs)          # Report: one StudyAnalysis per study, one shared Scale
    report.studies[0].front, .knee, .hv_history, .effects, .importances, .buckets, .protocol

Which trials count where:
- the front, the knee and the hypervolume use completed, feasible trials that are not reused
  duplicates (a reused trial is the same point as its original);
- the normalization and reference point of the hypervolume span every completed trial (feasible
  or not) of every compared study, so the studies' volumes compare;
- marginal effects and importances use every completed trial that is not a reused duplicate.
No plotting and no torch here; `render` and `documents` draw and write what this computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ConfigErrors
from ..metrics import CONTEXT_METRICS, bucket_columns
from ..pareto import knee_point, pareto_front
from ..results import front_candidates
from ..schema.paths import TRAIN, field_name, qualified
from .compute import ComputeUsage, compute_usage
from .effects import marginal_effects, value_label, varying_columns
from .hypervolume import Scale, hypervolume_history, reference_scale
from .importance import Importances, param_importances
from .samples import SampleGrids, plan_grids

__all__ = ["StudyInput", "StudyAnalysis", "Report", "load_study_input", "read_space", "analyze", "bucket_ranges"]


@dataclass
class StudyInput:
    """A study's results table and what the report needs beside it."""

    name: str
    df: pd.DataFrame                      # the results table (archsearch.results)
    objectives: list[str]
    directions: list[str]
    folder: Path | None = None            # the study folder: space.yaml, trials/<n>/checkpoint.pt
    space: dict[str, Any] | None = None   # the resolved space file, as written by `archsearch run`
    searched: dict[str, pd.Series] = field(default_factory=dict)  # column -> value per trial number
    study: Any = None                     # the Optuna study, for importances
    verify: Any = None                    # its verify study (archsearch.verify), when one exists


def load_study_input(study_dir: str | Path | None = None, storage: str | None = None, study: str | None = None,
                     folder: str | Path | None = None) -> StudyInput:
    """Open a study (its folder, or a storage URL and name) and read its table and space file.

    `folder` is where space.yaml and trials/ are looked for (default: `study_dir`).
    """
    from ..results import objective_names, open_study, trials_dataframe

    opened = open_study(study_dir, storage, study)
    objectives = objective_names(opened)
    directions = [d.name.lower() for d in opened.directions]
    trials = opened.get_trials(deepcopy=False)
    df = trials_dataframe(trials, objectives)
    folder = Path(folder or study_dir) if (folder or study_dir) else None
    from ..verify.analysis import find_verify_study

    return StudyInput(opened.study_name, df, objectives, directions, folder, read_space(folder), _searched(trials, df), opened,
                      find_verify_study(study_dir, storage, opened.study_name))


def read_space(folder: Path | None) -> dict[str, Any] | None:
    """The resolved space file `archsearch run` keeps in a study folder, if there is one (read
    as every command reads it: archsearch.search.study_files.read_space)."""
    from ..search.study_files import read_space as read_study_space

    return read_study_space(folder)


def _searched(trials: list, df: pd.DataFrame) -> dict[str, pd.Series]:
    """The searched fields by name (`architecture.skip.combine`, `train.lr`; the table column of
    the same name), whatever names the study's format version gave their parameters: each one's
    column, or its parameter's values when the config has no such field (`architecture.depth`)."""
    params = {t.number: {field_name(p): v for p, v in t.params.items()} for t in trials}
    out: dict[str, pd.Series] = {}
    by_number = df.set_index("number") if "number" in df.columns else df
    for name in sorted({name for values in params.values() for name in values}):
        if name in by_number.columns:
            out[name] = by_number[name]
        else:
            out[name] = pd.Series({number: values.get(name) for number, values in params.items()}, name=name)
    return out


@dataclass
class StudyAnalysis:
    input: StudyInput
    counts: dict[str, int]          # trials by state; plus `infeasible` and `reused` among COMPLETE
    completed: pd.DataFrame         # COMPLETE and not reused (feasible or not)
    feasible: pd.DataFrame          # ... and feasible
    front: pd.DataFrame             # Pareto front of `feasible`, sorted by the first objective
    knee: pd.Series | None
    hypervolume: float              # normalized (see Report.scale)
    hv_history: pd.DataFrame        # number, hypervolume (front of trials 0..number)
    fields: list[str]               # searched fields, as columns of `effects`
    effects: pd.DataFrame           # effects.marginal_effects
    importances: Importances | None
    buckets: pd.DataFrame           # the front's per-bucket losses: number, val_loss_t0...
    bucket_ranges: list[tuple[int, int]]
    protocol: dict[str, Any]
    compute: ComputeUsage | None = None  # training steps spent and saved, when trials stopped early
    verification: Any = None        # archsearch.verify.analysis.Verification, when a verify study exists
    samples: SampleGrids | None = None  # the front's sample grids, planned (report.samples draws them)

    @property
    def name(self) -> str:
        return self.input.name


@dataclass
class Report:
    studies: list[StudyAnalysis]
    objectives: list[str]
    directions: list[str]
    scale: Scale | None             # shared normalization and reference point; None without data


def analyze(inputs: list[StudyInput], importances: bool = True) -> Report:
    """Analyze every study against one shared reference point."""
    if not inputs:
        raise ConfigErrors([ConfigError("study", "give at least one study")])
    first = inputs[0]
    errors = [
        ConfigError(item.name, f"optimizes {_describe(item)} but {first.name} optimizes {_describe(first)}; "
                               "only studies with the same objectives compare")
        for item in inputs[1:] if (item.objectives, item.directions) != (first.objectives, first.directions)
    ]
    if errors:
        raise ConfigErrors(errors)
    objectives, directions = first.objectives, first.directions
    parts = [front_candidates(item.df, item.objectives) for item in inputs]
    scale = reference_scale([completed[objectives].to_numpy(dtype=float) for completed, _ in parts], directions)
    studies = [_analyze_one(item, completed, feasible, scale, importances) for item, (completed, feasible) in zip(inputs, parts)]
    return Report(studies, objectives, directions, scale)


def _describe(item: StudyInput) -> str:
    return ", ".join(f"{d} {o}" for o, d in zip(item.objectives, item.directions))


def _analyze_one(item: StudyInput, completed: pd.DataFrame, feasible: pd.DataFrame, scale: Scale | None,
                 with_importances: bool) -> StudyAnalysis:
    df, objectives, directions = item.df, item.objectives, item.directions
    front = pareto_front(feasible, objectives, directions)
    counts = df["state"].value_counts().to_dict() if not df.empty else {}
    complete = df[df["state"] == "COMPLETE"] if not df.empty else df
    counts["infeasible"] = len(completed) - len(feasible)
    counts["reused"] = int(complete["reused_from"].notna().sum()) if "reused_from" in complete.columns else 0
    hv_history = _hv_history(df, feasible, objectives, scale)
    fields, table = _effect_table(item, completed)
    effects = marginal_effects(table, fields, objectives)
    imps = param_importances(item.study, objectives, directions) if with_importances and item.study is not None else None
    bucket_cols = bucket_columns(df.columns)
    buckets = front[["number", *bucket_cols]].reset_index(drop=True) if bucket_cols else pd.DataFrame()
    return StudyAnalysis(
        input=item, counts={k: int(v) for k, v in counts.items()}, completed=completed, feasible=feasible,
        front=front, knee=knee_point(front, objectives, directions),
        hypervolume=float(hv_history["hypervolume"].iloc[-1]) if len(hv_history) else 0.0, hv_history=hv_history,
        fields=fields, effects=effects, importances=imps, buckets=buckets,
        bucket_ranges=bucket_ranges(item.space, df, len(bucket_cols)), protocol=protocol(item),
        compute=compute_usage(df), verification=_verification(item),
        samples=plan_grids(item.folder, item.space, df, front, objectives),
    )


def _verification(item: StudyInput):
    if item.verify is None:
        return None
    from ..verify.analysis import verification_of

    return verification_of(item.df, item.objectives, item.directions, item.verify)


def _hv_history(df: pd.DataFrame, feasible: pd.DataFrame, objectives: list[str], scale: Scale | None) -> pd.DataFrame:
    if scale is None or df.empty:
        return pd.DataFrame({"number": pd.Series(dtype=int), "hypervolume": pd.Series(dtype=float)})
    numbers = df["number"].to_numpy()
    values = np.full((len(df), len(objectives)), np.nan)
    rows = df.index.get_indexer(feasible.index)  # feasible keeps df's index
    values[rows] = feasible[objectives].to_numpy(dtype=float)
    order = np.argsort(numbers, kind="stable")
    return pd.DataFrame({"number": numbers[order], "hypervolume": hypervolume_history(values[order], scale)})


def _effect_table(item: StudyInput, completed: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The fields to summarize and a table holding them (searched parameters without a config
    column, like `depth`, are joined on the trial number)."""
    fields = [c for c, s in item.searched.items() if s.loc[s.index.isin(completed["number"])].map(str).nunique() > 1] \
        if item.searched else varying_columns(completed)
    table = completed.copy()
    for column, series in item.searched.items():
        if column in fields and column not in table.columns:
            table[column] = table["number"].map(series)
    return fields, table


def bucket_ranges(space: dict | None, df: pd.DataFrame, buckets: int) -> list[tuple[int, int]]:
    """[t_lo, t_hi) of each noise bucket, as archsearch.evaluate splits [0, T)."""
    if buckets == 0:
        return []
    T = None
    if space and isinstance(space.get(TRAIN), dict):
        T = space[TRAIN].get("num_timesteps")
    column = qualified(TRAIN, "num_timesteps")
    if not isinstance(T, int) and column in df.columns and df[column].notna().any():
        T = int(df[column].dropna().iloc[0])
    T = T if isinstance(T, int) else 1000  # TrainConfig's default
    edges = [T * b // buckets for b in range(buckets + 1)]
    return [(edges[b], edges[b + 1]) for b in range(buckets)]


def _speed(item: StudyInput) -> dict[str, Any]:
    """The reference speeds behind the normalized throughput (archsearch.search.speed): the
    table's medians, the anchors the stored objective values used, the trials timed against a
    reference and those of them measured under load."""
    from ..search.speed import REFERENCE_ATTR, study_reference_speeds

    df = item.df
    timed = df.loc[df["ref_throughput"].notna()] if "ref_throughput" in df.columns else df.iloc[0:0]
    flags = timed["measured_under_load"] if "measured_under_load" in timed.columns else timed.index.to_series()
    flagged = timed.loc[flags.map(lambda v: v is True).astype(bool)]
    anchors = item.study.user_attrs.get(REFERENCE_ATTR) if item.study is not None else None
    return {"timed": len(timed), "medians": study_reference_speeds(df), "anchors": dict(anchors or {}),
            "under_load": [int(n) for n in flagged["number"]]}


def protocol(item: StudyInput) -> dict[str, Any]:
    """How the numbers were obtained: hardware and software as recorded by the trials, and the
    space file's measure/eval/data/train sections (empty when there is no space.yaml)."""
    df = item.df
    done = df[df["state"] == "COMPLETE"] if not df.empty else df
    recorded = {}
    for key in CONTEXT_METRICS:
        if key in done.columns:
            values = [value_label(v) for v in done[key].dropna().unique()]
            recorded[key] = ", ".join(values) if values else None
    space = item.space or {}
    return {
        "recorded": recorded,
        "speed": _speed(item),
        "measure": space.get("measure"),
        "eval": space.get("eval"),
        "data": space.get("data"),
        "train": space.get("train"),
        "study": space.get("study"),
        "constraints": space.get("constraints") or [],
    }

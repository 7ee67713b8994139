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

A front in two other metrics (`analyze(inputs, front=["fd", "train_throughput_normalized"]`,
`archsearch report --front fd,train_throughput_normalized`): any two recorded metrics the registry
gives a direction (`FRONT_METRICS`), the first on the vertical axis as the objectives' first is;
each study then has a `FrontView`, the Pareto front and knee of its completed, feasible trials in
those two, beside its front in the objectives.
No plotting and no torch here; `render` and `documents` draw and write what this computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ConfigErrors
from ..metrics import CONTEXT_METRICS, METRICS, QUALITY_METRICS, bucket_columns
from ..pareto import knee_point, pareto_front
from ..results import front_candidates
from ..schema.paths import TRAIN, field_name, qualified
from .baselines import against_baselines
from .compute import ComputeUsage, compute_usage
from .effects import marginal_effects, value_label, varying_columns
from .hypervolume import Scale, hypervolume_history, reference_scale
from .importance import Importances, param_importances
from .samples import SampleGrids, plan_grids

__all__ = ["StudyInput", "StudyAnalysis", "Report", "FrontView", "FRONT_METRICS", "front_metrics", "load_study_input",
           "read_space", "analyze", "bucket_ranges"]

# What a front may be drawn in (`--front`): a trial's recorded numbers that have a better direction.
FRONT_METRICS = tuple(name for name, info in METRICS.items()
                      if info.direction and info.recorded and info.table and info.format in ("number", "count"))


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
    quality: list[dict[str, Any]] = field(default_factory=list)  # how completed trials measured sample quality
    baselines: pd.DataFrame | None = None  # its baselines study's table (study.baselines), speeds on its scale


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
                      find_verify_study(study_dir, storage, opened.study_name), _quality_records(trials),
                      _baselines_table(study_dir, storage, opened.study_name, objectives, df))


def _baselines_table(study_dir, storage, name: str, objectives: list[str], df: pd.DataFrame) -> pd.DataFrame | None:
    """The table of the study's baselines study (archsearch.search.baselines), if it has one, its
    normalized speeds scaled by the study's own reference speeds so that they compare."""
    from ..results import BASELINES_SUFFIX, open_study, trials_dataframe
    from ..search.speed import speed_columns, study_reference_speeds

    if name.endswith(BASELINES_SUFFIX):
        return None
    try:
        opened = open_study(study_dir, storage, f"{name}{BASELINES_SUFFIX}")
    except ConfigErrors:
        return None
    table = trials_dataframe(opened.get_trials(deepcopy=False), objectives)
    medians = study_reference_speeds(df)
    return speed_columns(table, medians) if medians and not table.empty else table


def _quality_records(trials: list) -> list[dict[str, Any]]:
    """The `quality` record (archsearch.metrics: features, samples, sampler, ...) of every
    completed trial that measured sample quality, reused duplicates left out."""
    return [t.user_attrs["quality"] for t in trials
            if t.state.name == "COMPLETE" and isinstance(t.user_attrs.get("quality"), dict)
            and t.user_attrs.get("reused_from") is None]


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
    view: FrontView | None = None   # the front in two metrics the user picked (`--front`), when they are not the objectives
    baselines: list = field(default_factory=list)  # archsearch.report.baselines.BaselineVerdict, one per baseline trial

    @property
    def name(self) -> str:
        return self.input.name


@dataclass
class FrontView:
    """A study's Pareto front in two metrics the user picked: over its completed (not reused)
    trials that measured both, of which the feasible ones compete, with their knee."""

    metrics: list[str]              # [vertical axis, horizontal axis]
    directions: list[str]           # the registry's
    completed: pd.DataFrame
    feasible: pd.DataFrame
    front: pd.DataFrame             # sorted by the first metric
    knee: pd.Series | None


@dataclass
class Report:
    studies: list[StudyAnalysis]
    objectives: list[str]
    directions: list[str]
    scale: Scale | None             # shared normalization and reference point; None without data


def front_metrics(text: str) -> list[str]:
    """`fd,train_throughput_normalized` -> the two metrics a front is drawn in (`--front`);
    ConfigErrors at `--front` for anything but two different names of `FRONT_METRICS`."""
    from ..errors import excerpt

    names = [n.strip() for n in text.split(",")]
    choices = f"choose two of: {', '.join(FRONT_METRICS)}"
    if len(names) != 2 or not all(names):
        raise ConfigErrors([ConfigError("--front", f"{excerpt(text)} is not two metric names separated by a comma "
                                                   f"(such as fd,train_throughput_normalized); {choices}")])
    unknown = [n for n in names if n not in FRONT_METRICS]
    if unknown:
        raise ConfigErrors([ConfigError("--front", f"{excerpt(n)} is not a metric a front can be drawn in; {choices}")
                            for n in unknown])
    if names[0] == names[1]:
        raise ConfigErrors([ConfigError("--front", f"{names[0]} is named twice; {choices}")])
    return names


def analyze(inputs: list[StudyInput], importances: bool = True, front: list[str] | None = None) -> Report:
    """Analyze every study against one shared reference point; with `front` (two of
    `FRONT_METRICS`, see `front_metrics`) also each study's front in those two."""
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
    if front is not None and list(front) != list(objectives):
        _check_measured(inputs, front)
        for study in studies:
            study.view = front_view(study.input.df, list(front))
    return Report(studies, objectives, directions, scale)


def front_view(df: pd.DataFrame, metrics: list[str]) -> FrontView:
    """The Pareto front of `df`'s completed, feasible trials in `metrics` (see `FrontView`)."""
    directions = [METRICS[m].direction for m in metrics]
    completed, feasible = front_candidates(df, metrics)
    front = pareto_front(feasible, metrics, directions)
    return FrontView(metrics, directions, completed, feasible, front, knee_point(front, metrics, directions))


def _check_measured(inputs: list[StudyInput], metrics: list[str]) -> None:
    """Each of `metrics` was measured by some completed trial of every study: a front in a metric
    no trial has would be empty for no visible reason."""
    errors = []
    for item in inputs:
        done = item.df[item.df["state"] == "COMPLETE"] if not item.df.empty else item.df
        measured = [m for m in FRONT_METRICS if m in done.columns and pd.to_numeric(done[m], errors="coerce").notna().any()]
        for name in metrics:
            if name not in measured:
                hint = " (sample quality: its space's eval.quality)" if name in QUALITY_METRICS else ""
                errors.append(ConfigError("--front", f"no completed trial of {item.name} measured {name}{hint}; "
                                                     f"it measured: {', '.join(measured) or 'nothing yet'}"))
    if errors:
        raise ConfigErrors(errors)


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
        baselines=against_baselines(front, item.baselines, objectives, directions),
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


def _quality(item: StudyInput) -> dict[str, Any] | None:
    """How sample quality was measured (None: it was not): the distinct `quality` records of the
    completed trials, with how many trials each; the metrics measured; the median time of the
    phase per trial, and its median share of a trial's duration."""
    df = item.df
    done = df[df["state"] == "COMPLETE"] if not df.empty else df
    if "reused_from" in done.columns:  # a duplicate measured nothing: it is its original's record
        done = done[done["reused_from"].isna()]
    measured = [m for m in QUALITY_METRICS if m in done.columns and done[m].notna().any()]
    if not measured and not item.quality:
        return None
    records: list[tuple[dict[str, Any], int]] = []
    for record in item.quality:
        for i, (seen, n) in enumerate(records):
            if seen == record:
                records[i] = (seen, n + 1)
                break
        else:
            records.append((record, 1))
    seconds = pd.to_numeric(done.get("quality_seconds", pd.Series(dtype=float)), errors="coerce")
    duration = pd.to_numeric(done.get("duration_s", pd.Series(dtype=float)), errors="coerce")
    share = (seconds / duration).dropna()
    noise = pd.to_numeric(done.get("fd_noise", pd.Series(dtype=float)), errors="coerce")
    fd = pd.to_numeric(done.get("fd", pd.Series(dtype=float)), errors="coerce")
    return {"metrics": measured, "trials": int(done[measured[0]].notna().sum()) if measured else 0,
            "records": records, "seconds": float(seconds.median()) if seconds.notna().any() else None,
            "share": float(share.median()) if len(share) else None,
            "fd_noise": float(noise.median()) if noise.notna().any() else None,
            "fd_cv": float((noise / fd).median()) if (noise / fd).notna().any() else None}


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
        "quality": _quality(item),
        "measure": space.get("measure"),
        "eval": space.get("eval"),
        "data": space.get("data"),
        "train": space.get("train"),
        "study": space.get("study"),
        "constraints": space.get("constraints") or [],
    }

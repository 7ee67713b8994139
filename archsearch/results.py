"""The results table: Optuna storage -> one tidy row per trial -> trials.csv / trials.parquet.

    df = load_results("results/quickstart")               # the embedded storage of a study folder
    df = load_results(storage="postgresql://...", study="quickstart")

Columns, in order: number, state, the objectives, the metrics of archsearch.metrics' "metrics"
group in its order (params, flops, train_throughput, train_throughput_normalized, ref_throughput,
..., peak_mem_mb, val_loss, the per-bucket losses val_loss_t0..t4 from low to high noise, ...,
duration_s), under
early stopping the validation loss at each rung step (`val_loss_at_20`, `val_loss_at_60`, ...,
from the trials' `rung_<k>` records; archsearch.search.stopping), the trial's identity
(config_hash, fail_reason, and for a stopped trial stopped_rung, stopped_at_step, stop_reason,
...), the "details" group (outcome, device, steps_trained, ...), then the flattened config and
training settings, each column named as the field is in a space
file (archsearch.schema.paths.qualified: `architecture.levels.1.width`, `train.lr`), which is also
its Optuna parameter's name. The table is always derived from the storage (the `config` and
`train` user attributes, whatever the study's format version), so it can be regenerated at any
time and an old study's table has today's columns. The speed columns relative to the study's
reference speed (`train_throughput_normalized`, `measured_under_load`) are recomputed over all
of the table's trials (archsearch.search.speed); they are empty for trials timed without one.

**Which rows can be on the front** is decided here, once, for the study folder's summary, the
live display and the report (`front_candidates`): COMPLETE trials that are not reused duplicates
(a duplicate is its original's point), with every objective finite; of those, the feasible ones
are those whose `feasible` cell is true or empty (a trial without constraints; Optuna's rule for
`best_trials`). `front_of` is the Pareto front of the feasible candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import atomic_write
from .metrics import METRICS, bucket_columns, table_metrics
from .pareto import pareto_front
from .schema.paths import ARCHITECTURE, SECTIONS, TRAIN, flatten, qualified, section_of
from .search.records import FINISHED
from .search.rungs import rung_loss_columns, rung_losses
from .search.baselines import BASELINES_SUFFIX  # a search's hand-designed baselines are another study
from .search.speed import speed_columns

__all__ = ["trials_dataframe", "load_results", "write_tables", "regenerate_tables", "open_study", "front_candidates",
           "front_of", "setting_columns"]

_LEAD = ["number", "state"]
_IDENTITY = ["variant", "baseline", "source_trial", "budget", "role", "config_hash", "settings_hash", "fail_reason", "stopped_rung",
             "stopped_at_step", "stop_reason", "reused_from"]
_TIMES = ["datetime_start", "datetime_complete"]
# The trial attribute each section's columns are flattened from.
_SECTION_ATTRS = {ARCHITECTURE: "config", TRAIN: "train"}
# A study `archsearch verify` links to another of the same storage is named after it (archsearch.verify).
VERIFY_SUFFIX = "-verify"
# A config column that names the schema, not a choice: never a field in which trials differ.
_SCHEMA_VERSION = qualified(ARCHITECTURE, "schema_version")


def setting_columns(columns) -> list[str]:
    """The columns of the flattened configs and training settings, in order (without the schema
    version): what trials can differ in."""
    return [c for c in columns if section_of(c) and c != _SCHEMA_VERSION]


def _columns(objectives: list[str], buckets: list[str], rungs: list[str] = ()) -> list[str]:
    """Every column before the flattened configs, in order."""
    metrics = [c for m in table_metrics("metrics") for c in (buckets if m.format == "buckets" else [m.name])]
    details = [m.name for m in table_metrics("details")]
    return list(dict.fromkeys(_LEAD + objectives + metrics + list(rungs) + _IDENTITY + details + _TIMES))


def trials_dataframe(trials: list, objectives: list[str] | None = None, rows: dict | None = None) -> pd.DataFrame:
    """One row per Optuna FrozenTrial (see the module docstring for the columns).

    `rows`, a dict the caller keeps between calls for one study and the same objectives, caches
    the rows of finished trials (which never change), so that a study of thousands of trials
    only reads its new and running trials again; the table equals one made without it.
    """
    objectives = list(objectives or [])
    df = pd.DataFrame([_cached_row(t, objectives, rows) for t in trials])
    if df.empty:
        return pd.DataFrame(columns=_columns(objectives, []))
    # Present even when no trial has them: the objectives, the scalar metrics and why a trial failed.
    always = _LEAD + objectives + [m.name for m in table_metrics("metrics") if m.format != "buckets"]
    for col in always + ["config_hash", "fail_reason"]:
        if col not in df.columns:
            df[col] = None
    df = speed_columns(df)  # relative to the study's reference speeds: recomputed over all of its trials
    settings = [c for section in SECTIONS for c in sorted(c for c in df.columns if section_of(c) == section)]
    ordered = [c for c in _columns(objectives, bucket_columns(df.columns), rung_loss_columns(df.columns)) + ["feasible"]
               if c in df.columns] + settings
    rest = [c for c in df.columns if c not in ordered]
    return df[ordered + rest].sort_values("number").reset_index(drop=True)


def _cached_row(trial, objectives: list[str], rows: dict | None) -> dict[str, Any]:
    if rows is None:
        return _row(trial, objectives)
    state = trial.state.name
    cached = rows.get(trial.number)
    if cached is not None and cached[0] == state:
        return cached[1]
    row = _row(trial, objectives)
    if state in FINISHED:
        rows[trial.number] = (state, row)
    return row


def _row(trial, objectives: list[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, **rung_losses(attrs, objectives)}
    for key in _IDENTITY + _TIMES:
        if key in attrs:
            row[key] = attrs[key]
    for info in METRICS.values():
        key = info.key_in(attrs)
        if key is not None:
            value = attrs[key]
            row.update(zip(info.column_names(value), (value or []) if info.format == "buckets" else [value]))
    if trial.datetime_start is not None:
        row["datetime_start"] = trial.datetime_start.isoformat()
    if trial.datetime_complete is not None:
        row["datetime_complete"] = trial.datetime_complete.isoformat()
        if "duration_s" not in row and trial.datetime_start is not None:
            row["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    constraints = getattr(trial, "constraints", None)
    if constraints:
        row["feasible"] = all(v <= 0 for v in constraints.values()) if isinstance(constraints, dict) else all(
            v <= 0 for v in constraints)
    for section, key in _SECTION_ATTRS.items():
        if isinstance(attrs.get(key), dict):
            row.update({qualified(section, k): _cell(v) for k, v in flatten(attrs[key]).items()})
    return row


def front_candidates(df: pd.DataFrame, objectives: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(completed, feasible): the rows that count for the front, and those of them that satisfy
    every constraint (see the module docstring). Both keep `df`'s index."""
    if df.empty or not objectives or not set(objectives) <= set(df.columns):
        empty = df.iloc[0:0]
        return empty, empty
    completed = df[df["state"] == "COMPLETE"]
    if "reused_from" in completed.columns:
        completed = completed[completed["reused_from"].isna()]
    values = completed[list(objectives)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    completed = completed[np.isfinite(values).all(axis=1)]
    if "feasible" not in completed.columns:
        return completed, completed
    return completed, completed[completed["feasible"].map(lambda v: v is None or v != v or bool(v))]


def front_of(df: pd.DataFrame, objectives: list[str], directions: list[str]) -> pd.DataFrame:
    """The Pareto front of the feasible candidates of `df`, sorted by the first objective."""
    return pareto_front(front_candidates(df, objectives)[1], objectives, directions)


def _cell(value: Any) -> Any:
    # Lists (multipliers, attention resolutions) as text, so the column has one type.
    return str(value) if isinstance(value, (list, dict)) else value


def open_study(study_dir: str | Path | None = None, storage: str | None = None, study: str | None = None):
    """Load an existing study from its folder (embedded storage) or from a storage URL."""
    import optuna

    from .errors import ConfigError, ConfigErrors, excerpt
    from .search.storage import JOURNAL_NAME, open_storage
    from .urls import mask_url

    if storage is None:
        if study_dir is None:
            raise ConfigErrors([ConfigError("study", "give a study folder, or --storage URL with --study NAME")])
        study_dir = Path(study_dir)
        if not (study_dir / JOURNAL_NAME).exists():
            raise ConfigErrors([ConfigError(str(study_dir), f"is not a study folder (no {JOURNAL_NAME})")])
        from .search.study_files import check_journal, replayed

        check_journal(study_dir / JOURNAL_NAME)  # a damaged journal: one line naming it, before Optuna replays it
        handle = replayed(study_dir / JOURNAL_NAME, lambda: open_storage(None, study_dir))
        names = replayed(study_dir / JOURNAL_NAME, lambda: [s.study_name for s in optuna.get_all_study_summaries(handle)])
        name = study or _default_study(names, study_dir.name) or study_dir.name
    else:
        handle = open_storage(storage, Path(study_dir or "."))
        names = [s.study_name for s in optuna.get_all_study_summaries(handle)]
        name = study or _default_study(names)
        if name is None:
            raise ConfigErrors([ConfigError("--study", f"the storage {mask_url(storage)} holds {len(names)} studies; name one of: {', '.join(names)}")])
    if name not in names:
        raise ConfigErrors([ConfigError("--study", f"no study {excerpt(name)} in the storage; it holds: {', '.join(names) or 'none'}")])
    return optuna.load_study(study_name=name, storage=handle)


def _default_study(names: list[str], preferred: str | None = None) -> str | None:
    """The study meant without --study: `preferred` (the folder's name), else the only one that is
    not the verify study of another."""
    if preferred in names:
        return preferred
    own = [n for n in names if not any(n.endswith(s) and n.removesuffix(s) in names for s in (VERIFY_SUFFIX, BASELINES_SUFFIX))]
    return own[0] if len(own) == 1 else None


def objective_names(study) -> list[str]:
    names = study.user_attrs.get("objectives")
    return [o["metric"] for o in names] if names else [f"value_{i}" for i in range(len(study.directions))]


def load_results(study_dir: str | Path | None = None, storage: str | None = None, study: str | None = None) -> pd.DataFrame:
    """The results table of a study, regenerated from its storage."""
    opened = open_study(study_dir, storage, study)
    return trials_dataframe(opened.get_trials(deepcopy=False), objective_names(opened))


def write_tables(df: pd.DataFrame, study_dir: Path) -> None:
    """Write trials.csv and trials.parquet atomically (temporary files renamed into place)."""
    atomic_write(study_dir / "trials.csv", lambda path: df.to_csv(path, index=False))
    atomic_write(study_dir / "trials.parquet", lambda path: _to_parquet(df, path))


def regenerate_tables(study_dir: str | Path | None = None, storage: str | None = None, study: str | None = None,
                      out: str | Path | None = None) -> tuple[pd.DataFrame, Path]:
    """`archsearch results`: the results table of a study, rewritten as trials.csv and
    trials.parquet in `out` (default: the study folder, or results/<study> for a storage URL; for
    a verify study, the `verify/` folder inside its source study's folder).
    Returns the table and the folder written to."""
    opened = open_study(study_dir, storage, study)
    df = trials_dataframe(opened.get_trials(deepcopy=False), objective_names(opened))
    source = opened.user_attrs.get("verify_of")
    home = Path(study_dir or Path("results") / (source or opened.study_name))
    folder = Path(out) if out else home / "verify" if source else home
    write_tables(df, folder)
    return df, folder


def _to_parquet(df: pd.DataFrame, path: str) -> None:
    # Mixed-type object columns (a field that is sometimes null, sometimes text) as strings.
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            types = {type(v) for v in out[col].dropna()}
            if len(types) > 1:
                out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    out.to_parquet(path, index=False)


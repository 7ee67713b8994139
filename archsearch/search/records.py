"""A trial's record: `trials/<number>/metrics.json` on disk, and telling the storage from it.

A finished trial's outcome (state, objective values, user attributes, constraints) is written
to `trials/<number>/metrics.json` atomically before the storage is told (`write_result`), so that
a trained trial survives a storage that stays down past its retries (archsearch.search.retry):
its worker ends with the error, and the trial waits in the storage as RUNNING with its result on
disk. After a successful tell the study folder rewrites it from the storage (`write_trial_files`), so
it always says what the storage says, plus what the storage could not be told.

`recover_result` records such a trial when the study resumes: a worker that finds a RUNNING trial
whose worker is gone (archsearch.search.worker.reap_stale_trials) first looks for its file, and
if the file holds a finished outcome of this very trial (same start time), tells the storage
that outcome exactly as its worker would have: the user attributes, the constraints, then the
state and values. The trial keeps its number, parameters and start time; only its completion
time is the time of recovery. Telling the trial itself is the one way with Optuna 5's API that
neither loses nor duplicates it: a RUNNING trial can still be told (`study.tell`), while a finished
one never changes, and a result enqueued or added as a new trial would stand beside the failed
one and its retry. So a trial the storage already holds as FAIL (failed as `worker died` by a
machine that could not see this folder, and re-enqueued) is left as it is: its retry trains it
again, and its file keeps the first result for inspection.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from ..io import atomic_write_json, atomic_write_text
from .objective import TrialOutcome
from .storage import StoredTrial

__all__ = ["CHECKPOINT_NAME", "checkpoint_path", "write_result", "write_trial_files", "record_outcome", "recover_result", "read_result"]

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


CHECKPOINT_NAME = "checkpoint.pt"  # trials/<n>/checkpoint.pt: a completed trial's final weights (study.checkpoints)


def result_path(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / "trials" / str(number) / "metrics.json"


def checkpoint_path(study_dir: Path, number: int) -> Path:
    """Where trial `number` keeps its final weights (archsearch.train's checkpoint format)."""
    return Path(study_dir) / "trials" / str(number) / CHECKPOINT_NAME


def write_result(study_dir: Path, trial, outcome: TrialOutcome) -> None:
    """Write a trial's outcome as its metrics.json, before the storage is told (reading nothing
    from the storage: it may be the thing that is down)."""
    _write(study_dir, trial.number, outcome.state.upper(), outcome.values, outcome.constraints, outcome.attrs,
           trial.datetime_start)


def write_trial_files(study_dir: Path, trial) -> None:
    """config.yaml and metrics.json of a trial (a FrozenTrial), as the storage holds it.

    A trial the storage still holds as RUNNING keeps a finished result already on disk: that
    file is what the next run records (see the module docstring).
    """
    number, attrs = trial.number, trial.user_attrs
    if isinstance(attrs.get("config"), dict):
        out = Path(study_dir) / "trials" / str(number)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(attrs["config"], sort_keys=False))
    if trial.state.name not in FINISHED and _finished_result(study_dir, trial) is not None:
        return
    _write(study_dir, number, trial.state.name, trial.values, trial.constraints, attrs, trial.datetime_start)


def _write(study_dir, number, state, values, constraints, attrs, started) -> None:
    atomic_write_json(result_path(study_dir, number), {
        "number": number, "state": state, "values": values, "constraints": constraints,
        "datetime_start": started.isoformat() if started else None, **attrs})


def read_result(study_dir: Path, number: int) -> dict | None:
    """The metrics.json of trial `number`, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(result_path(study_dir, number).read_text())
    except (OSError, ValueError):
        return None


def _finished_result(study_dir: Path, trial) -> dict | None:
    result = read_result(study_dir, trial.number)
    if not result or result.get("state") not in FINISHED:
        return None
    started = trial.datetime_start.isoformat() if trial.datetime_start else None
    return result if result.get("datetime_start") == started else None  # a file of another study's trial


def record_outcome(study, trial, outcome: TrialOutcome) -> None:
    """Tell the storage a finished trial: its user attributes, constraints, then state and values."""
    import optuna

    current = StoredTrial.of(study, trial).current()
    for key, value in outcome.attrs.items():
        if current.user_attrs.get(key, object()) != value:  # the early ones (config, ...) are there
            trial.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "already set": a recovery after a record that failed halfway
        for key, value in outcome.constraints.items():
            trial.set_constraint(key, value)
    try:
        if outcome.state == "complete":
            study.tell(trial, outcome.values)
        elif outcome.state == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except RuntimeError as exc:
        # GridSampler.after_trial calls study.stop() once every grid point is visited, which
        # ask-and-tell forbids. Optuna has stored the trial by then (in a `finally`).
        if "Study.stop" not in str(exc):
            raise


def recover_result(study, frozen, study_dir: Path) -> bool:
    """Record a RUNNING trial from its finished result on disk; False when there is none."""
    import optuna

    result = _finished_result(study_dir, frozen)
    if result is None:
        return False
    known = ("number", "state", "values", "constraints", "datetime_start")
    outcome = TrialOutcome(result["state"].lower(), result.get("values"), result.get("fail_reason") or "",
                           attrs={k: v for k, v in result.items() if k not in known}, constraints=result.get("constraints") or {})
    try:
        record_outcome(study, StoredTrial.of(study, frozen).live(), outcome)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another worker recorded it first
    return True

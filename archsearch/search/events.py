"""What the engine says while it runs trials: the events, and the observers that hear them.

The engine (archsearch.search.engine) runs trials and emits what happened; it knows nothing of
who listens. The study folder (archsearch.folder.StudyFolder: tables and `trials/<n>/` files),
the live display of `archsearch run` (archsearch.report.live.StudyDisplay) and the ablation's
progress line subscribe, as Optuna's study callbacks and Lightning's `Callback` hooks do:

    data_loaded(lines)                       the data was read (ImageData.describe), once
    study_changed(trials, done, running)     the study as the storage holds it: at the start, and
                                             while worker processes run its trials elsewhere
    trial_started(number, label)             this process asked for trial `number`
    progress(phase, step, total, loss)       the running trial's phase (every training step)
    evaluated(number, step, val_loss)        an intermediate validation loss (`eval.curve_points`),
                                             what a successive-halving scheduler decides from
    trial_finished(trial, trials, done)      its record (a FrozenTrial), and the whole study
    study_stopped(trials, done)              the run ended (also by an exception or a signal)

`trials` are Optuna FrozenTrials, `done` is how many trials count towards the run's total (the
trial source says what counts), `running` lists (number, phase) of trials running elsewhere.
Events carry plain data, so one recorded stream can be replayed to every observer (the contract
test in tests/test_events.py). This module imports nothing: the report layer subclasses
`Observer` without loading torch or Optuna.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Observer", "Broadcast"]


class Observer:
    """Hears the engine's events; every method does nothing unless overridden."""

    def data_loaded(self, lines: list[str]) -> None: ...
    def study_changed(self, trials: list[Any], done: int, running: list[tuple[int, str]]) -> None: ...
    def trial_started(self, number: int, label: str) -> None: ...
    def progress(self, phase: str, step: int, total: int, loss: float | None = None) -> None: ...
    def evaluated(self, number: int, step: int, val_loss: float) -> None: ...
    def trial_finished(self, trial: Any, trials: list[Any], done: int) -> None: ...
    def study_stopped(self, trials: list[Any], done: int) -> None: ...


class Broadcast(Observer):
    """Passes every event to each of `observers`, in order."""

    def __init__(self, observers=()):
        self.observers = [o for o in observers if o is not None]

    def data_loaded(self, lines):
        for o in self.observers:
            o.data_loaded(lines)

    def study_changed(self, trials, done, running):
        for o in self.observers:
            o.study_changed(trials, done, running)

    def trial_started(self, number, label):
        for o in self.observers:
            o.trial_started(number, label)

    def progress(self, phase, step, total, loss=None):
        for o in self.observers:
            o.progress(phase, step, total, loss)

    def evaluated(self, number, step, val_loss):
        for o in self.observers:
            o.evaluated(number, step, val_loss)

    def trial_finished(self, trial, trials, done):
        for o in self.observers:
            o.trial_finished(trial, trials, done)

    def study_stopped(self, trials, done):
        for o in self.observers:
            o.study_stopped(trials, done)

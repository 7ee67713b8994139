"""The one engine: the loop that runs trials of a study, from a trial source, and says what happened.

    source = SearchSource(space, target=40)                 # `archsearch run`: the sampler decides
    source = QueueSource({("base", 0): Fixed(...)}, space_for)  # `archsearch ablate`: fixed pairs
    run_trials(study, source, context_for, observers, study_cfg=space.study, study_dir=folder)

Every command that trains trials (run, its worker processes, ablate, verify) goes through
`run_trials`; they differ by their trial source (what to ask next, under which space) and their
observers (archsearch.search.events), never by their loop. The loop, for every trial:

1. reaps the running trials of dead workers (archsearch.search.worker.reap_stale_trials: recorded
   from their result on disk, or failed as `worker died` and re-enqueued);
2. stops at the deadline, or when the source says so; waits while the source says to (a search
   at its count waits for the others' running trials, which may still die and need a retry);
3. asks the source for a trial and its space, runs it under heartbeats, writes its outcome to
   `trials/<number>/metrics.json` and only then tells the storage (archsearch.search.records);
4. emits `trial_started`, `progress`, `evaluated` at every intermediate validation, and
   `trial_finished` with the stored record.

SIGINT/SIGTERM (archsearch.search.worker.handle_signals) fail the running trial as `interrupted`,
re-enqueue it, emit its record, and end the loop with `Interrupted`. Nothing else in archsearch
tells Optuna a trial's result.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..schema.paths import format_version
from .events import Observer
from .objective import failure_attrs, run_search_trial
from .records import checkpoint_path, record_outcome, write_result
from .storage import StoredTrial, is_transient
from .worker import Heartbeat, Interrupted, count_trials, counts, fail_and_retry, reap_stale_trials

if TYPE_CHECKING:
    from ..schema.space import SearchSpace
    from ..train import ProgressFn

__all__ = ["TrialSource", "SearchSource", "QueueSource", "Fixed", "SkipTrial", "WAIT", "run_trials", "observing",
           "run_one_trial", "finished", "pending", "unfinished", "PASSED_OVER"]

WAIT = "wait"  # what `TrialSource.next` returns to be asked again after a pause
PASSED_OVER = ("interrupted", "worker died", "skipped")  # failures that leave a fixed trial to be run again


class SkipTrial(Exception):
    """Raised by `TrialSource.space_for` for an asked trial that is not to run; the message is its
    fail reason."""


class TrialSource(Protocol):
    """What to run next. `next` asks the study for a trial (`study.ask()`), or returns None when
    the run is over, or WAIT; `space_for` gives the space the asked trial samples its config from."""

    def next(self, study) -> Any: ...
    def space_for(self, trial) -> SearchSpace: ...
    def label(self, trial) -> str: ...
    def done(self, study) -> int: ...


class SearchSource:
    """The sampler's trials until the study holds `target` finished ones (see archsearch.search.worker:
    trials failed by a dead worker or a signal do not count; their retries do)."""

    def __init__(self, space: SearchSpace, target: int):
        self.space, self.target = space, target

    def next(self, study):
        finished, running, _ = count_trials(study)
        if finished >= self.target:
            return None
        if finished + running >= self.target:
            return WAIT  # the others' trials may still finish, or die and need a retry
        trial = study.ask()
        if surplus(study, trial.number, self.target):
            _give_back(study, trial, self.target)
            return WAIT
        return trial

    def space_for(self, trial) -> SearchSpace:
        return self.space

    def label(self, trial) -> str:
        return ""

    def done(self, study) -> int:
        return count_trials(study)[0]


@dataclass(frozen=True)
class Fixed:
    """One trial a queue must run: its identity (config hash, settings hash), what else its trial
    records (e.g. variant and seed) and how displays name it."""

    identity: tuple[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _identity(trial) -> tuple[Any, Any]:
    return trial.user_attrs.get("config_hash"), trial.user_attrs.get("settings_hash")


def finished(trial) -> bool:
    """A completed trial, or one that failed on its own (diverged, oom, error), not one that was
    interrupted, lost with its worker, or skipped."""
    if trial.state.name == "COMPLETE":
        return True
    return trial.state.name == "FAIL" and trial.user_attrs.get("outcome") not in PASSED_OVER


def pending(trials: list, identities: dict[Hashable, tuple[str, str]]) -> list:
    """Keys with no finished, running or waiting trial, in `identities`' order."""
    taken = {_identity(t) for t in trials if finished(t) or t.state.name in ("RUNNING", "WAITING")}
    return [key for key, ident in identities.items() if ident not in taken]


def unfinished(trials: list, identities: dict[Hashable, tuple[str, str]]) -> list:
    """Keys without a finished trial (to do, waiting, or running somewhere)."""
    done = {_identity(t) for t in trials if finished(t)}
    return [key for key, ident in identities.items() if ident not in done]


class QueueSource:
    """Fixed trials, each run until it has a finished trial. The next one is enqueued just before
    it is popped (`enqueue_trial` then `ask`), so several processes on one study share the work;
    two that start at the same instant may run one twice (both are kept)."""

    def __init__(self, items: dict[Hashable, Fixed], space_for: Callable[[Hashable], SearchSpace],
                 stale: str = "skipped: not part of the ablation file any more"):
        self.items, self._space_for, self.stale = items, space_for, stale  # stale: the fail reason of a trial queued for another plan
        self.identities = {key: item.identity for key, item in items.items()}
        self.by_identity = {item.identity: key for key, item in items.items()}
        self.spaces: dict[Hashable, SearchSpace] = {}

    def next(self, study):
        trials = study.get_trials(deepcopy=False)
        todo = pending(trials, self.identities)
        if not todo and not any(t.state.name == "WAITING" for t in trials):
            return None
        if todo:
            item = self.items[todo[0]]
            chash, shash = item.identity
            study.enqueue_trial({}, user_attrs={**item.attrs, "config_hash": chash, "settings_hash": shash})
        return study.ask()  # the oldest waiting trial: usually the one just enqueued

    def key(self, trial):
        return self.by_identity.get(_identity(trial))

    def space_for(self, trial) -> SearchSpace:
        key = self.key(trial)
        if key is None:  # queued by an earlier version of the file
            raise SkipTrial(self.stale)
        if key not in self.spaces:
            self.spaces[key] = self._space_for(key)
        return self.spaces[key]

    def label(self, trial) -> str:
        key = self.key(trial)
        return self.items[key].label if key is not None else ""

    def done(self, study) -> int:
        return len(self.identities) - len(unfinished(study.get_trials(deepcopy=False), self.identities))


def run_trials(study, source: TrialSource, context_for: Callable, observers: Observer | None = None, *,
               study_cfg, study_dir: Path, deadline: float | None = None, poll: float = 1.0) -> None:
    """Run the trials `source` gives until it has none left or `deadline` (time.monotonic) passes
    (see the module docstring); `study_cfg` (a space's `study`) sets heartbeats, grace period and
    retries. Raises `Interrupted` after recording the running trial as `interrupted`."""
    observers = observers or Observer()
    while True:
        reap_stale_trials(study, study_cfg.grace_period, study_cfg.max_retries, study_dir)
        if deadline is not None and time.monotonic() > deadline:
            return
        trial = source.next(study)
        if trial is None:
            return
        if trial is WAIT:
            time.sleep(poll)
            continue
        try:
            space = source.space_for(trial)
        except SkipTrial as exc:
            _skip(study, trial, str(exc))
            continue
        observers.trial_started(trial.number, source.label(trial))
        try:
            run_one_trial(study, trial, space, context_for, observers.progress, study_cfg.max_retries,
                          study_cfg.heartbeat_interval, study_dir,
                          on_evaluated=lambda step, loss, number=trial.number: observers.evaluated(number, step, loss))
        except Interrupted:  # recorded as `interrupted`: say so, then end the loop
            _finished(study, trial, source, observers)
            raise
        _finished(study, trial, source, observers)


def _finished(study, trial, source: TrialSource, observers: Observer) -> None:
    record = StoredTrial.of(study, trial).current()
    observers.trial_finished(record, study.get_trials(deepcopy=False), source.done(study))


@contextmanager
def observing(study, source: TrialSource, observers: Observer):
    """Emit `study_changed` now and `study_stopped` when the block ends, however it ends (an error
    in an observer then must not hide the one that ended the block)."""
    observers.study_changed(study.get_trials(deepcopy=False), source.done(study), [])
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            observers.study_stopped(study.get_trials(deepcopy=False), source.done(study))
        raise
    observers.study_stopped(study.get_trials(deepcopy=False), source.done(study))


def run_one_trial(study, trial, space, context_for: Callable, on_progress: ProgressFn,
                  max_retries: int, heartbeat_interval: float, study_dir: Path,
                  on_evaluated: Callable[[int, float], None] | None = None):
    """Run an asked trial under heartbeats, write its outcome to `study_dir`, then tell the study.

    A completed trial's phase ends as `done`. On `Interrupted` the trial is failed as
    `interrupted` (and re-enqueued when it has parameters) before the exception goes on.
    """
    import optuna

    completed = lambda: study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))  # noqa: E731
    stored = StoredTrial.of(study, trial)
    phase_writer = _PhaseWriter(stored, on_progress)
    try:
        version = format_version(study.user_attrs)  # the parameter names its sampler knows
        with Heartbeat(stored, heartbeat_interval):
            weights = checkpoint_path(study_dir, trial.number) if space.study.checkpoints != "none" else None
            outcome = run_search_trial(trial, space, context_for, phase_writer, completed, on_evaluated, version,
                                       checkpoint=weights)
            if outcome.state == "complete":
                outcome.attrs["phase"] = "done"
            unkept = _keep(study_dir, trial, outcome)
            record_outcome(study, trial, outcome)
            if unkept is not None:  # told to the storage first: a database elsewhere holds it
                raise unkept
    except Interrupted:
        fail_and_retry(study, stored.current(), "interrupted", max_retries)
        raise
    return outcome


def _keep(study_dir: Path, trial, outcome) -> OSError | None:
    """Write the outcome to disk, then its files, then the outcome again with what they came to
    (archsearch.search.records): a worker that dies while writing a checkpoint leaves a trial that
    the next run records from disk. The error that kept the outcome itself off the disk (a full
    disk: the same command resumes once there is room), after which no file is tried."""
    try:
        write_result(study_dir, trial, outcome)
    except OSError as exc:
        if outcome.write_files is not None:
            outcome.attrs["missing_files"] = f"checkpoint not written: {exc}"
        return exc
    if outcome.write_files is None:
        return None
    missing = outcome.write_files()
    if not missing:
        return None
    outcome.attrs["missing_files"] = "; ".join(missing.values())
    try:
        write_result(study_dir, trial, outcome)
    except OSError as exc:
        return exc
    return None


def surplus(study, number: int, target: int) -> bool:
    """Whether trial `number`, just asked, is one too many: workers that counted at the same time
    all saw room for one more trial. The trials that count (finished ones that are not retried
    or surplus, and running ones) are ranked by number, and those past the `target`-th give way."""
    counting = sorted(t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" or counts(t))
    return number not in counting[:target]


def _give_back(study, trial, target: int) -> None:
    """Fail a surplus trial before it trains; it does not count (archsearch.search.worker.count_trials)."""
    stored = StoredTrial.of(study, trial)
    for key, value in failure_attrs(f"skipped: the study reached its {target} trials as this one was asked").items():
        stored.set_attr(key, value)
    stored.set_attr("surplus", True)
    stored.mark_failed()


def _skip(study, trial, reason: str) -> None:
    fail_and_retry(study, StoredTrial.of(study, trial).current(), reason, max_retries=0)


class _PhaseWriter:
    """Forwards progress to the observers, and records phase changes on the trial so that a
    parent process (or optuna-dashboard) can see what each worker is doing. Called every training
    step: it writes to the storage only when the phase changes. Like the heartbeat it only
    informs: a storage that stays down fails the trial's record, not its training."""

    def __init__(self, trial: StoredTrial, forward: ProgressFn):
        self.trial, self.forward, self.phase = trial, forward, None

    def __call__(self, phase: str, step: int, total: int, loss: float | None = None) -> None:
        if phase != self.phase:
            self.phase = phase
            try:
                self.trial.set_attr("phase", phase)
            except Exception as exc:
                if not is_transient(exc):
                    raise
        self.forward(phase, step, total, loss)


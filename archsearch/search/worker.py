"""A worker: the loop that asks the shared study for trials until it holds enough of them.

Any number of workers — processes on one machine (`--workers N`) or jobs on many machines
(`--storage URL`) — run this same loop against one study; the storage is the only thing they
share. What keeps them honest:

- **The count is the study's.** A worker starts a trial only while finished + running trials
  are below the target; at the target it waits for running trials to end (or to be found dead),
  then stops. Trials failed because their worker died or was interrupted do not count: their
  retry does.
- **Heartbeats.** While a trial runs, a thread writes the user attribute `heartbeat` (UTC
  seconds) every `study.heartbeat_interval` seconds, for every storage alike (Optuna's own
  heartbeats exist only for RDB storages inside `study.optimize`). Before asking for a trial,
  a worker fails every running trial whose heartbeat is older than `study.grace_period` —
  or whose worker is a dead process on this very host — with the reason
  `worker died: ...`, and re-enqueues its parameters (at most `study.max_retries` times).
  Optuna 5's TPE treats running trials as bad points, so this cleanup also keeps sampling sane.
- **Signals.** SIGINT and SIGTERM fail the running trial with reason `interrupted`, re-enqueue
  it for the next run, and end the worker with status 130 or 143.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .objective import run_search_trial

if TYPE_CHECKING:
    from ..train import ProgressFn

__all__ = ["Interrupted", "handle_signals", "worker_loop", "run_one_trial", "reap_stale_trials", "Heartbeat", "WORKER_ID"]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived; `code` is the exit status to end with (130 or 143)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.code = 128 + signum
        super().__init__(signal.Signals(signum).name)


@contextmanager
def handle_signals():
    """Turn SIGINT and SIGTERM into `Interrupted` in the main thread, for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum, frame):
        # Once is enough: a second Ctrl-C (or the parent forwarding the signal) must not cut
        # short the recording of the first.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Heartbeat:
    """Writes `heartbeat` on a running trial from a daemon thread until stopped."""

    def __init__(self, study, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = study._storage, trial_id, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="archsearch-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.storage.set_trial_user_attr(self.trial_id, "worker", WORKER_ID)
        self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # noqa: BLE001 - the trial may just have finished; next beat or exit
                if self.stop_event.is_set():
                    return


def _pid_dead_here(worker: str | None) -> bool:
    """True when `worker` (host:pid) is a process of this host that no longer exists."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (killed, not yet reaped by its parent) is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def reap_stale_trials(study, grace_period: float, max_retries: int) -> list[int]:
    """Fail running trials of dead workers and re-enqueue them; returns their numbers."""
    import optuna

    reaped = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        worker = attrs.get("worker")
        if worker == WORKER_ID:
            continue
        last = attrs.get("heartbeat") or (trial.datetime_start.timestamp() if trial.datetime_start else now)
        silent = now - last
        if _pid_dead_here(worker):
            reason = f"worker died: process {worker} is gone"
        elif silent > grace_period:
            reason = f"worker died: no heartbeat from {worker or 'its worker'} for {silent:.0f}s"
        else:
            continue
        if fail_and_retry(study, trial, reason, max_retries):
            reaped.append(trial.number)
    return reaped


def fail_and_retry(study, trial, reason: str, max_retries: int) -> bool:
    """Mark a running trial failed with `reason` and enqueue its parameters again.

    Returns False when another worker got there first. The failed trial is marked `retried`
    so that it does not count towards the study's total; its retry does.
    """
    import optuna

    storage = study._storage
    attempt = int(trial.user_attrs.get("attempt", 0))
    will_retry = attempt < max_retries and bool(trial.params)
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        storage.set_trial_user_attr(trial._trial_id, "outcome", reason.split(":", 1)[0])
        storage.set_trial_user_attr(trial._trial_id, "retried", will_retry or reason == "interrupted")
        if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if will_retry:
        study.enqueue_trial(trial.params, user_attrs={"attempt": attempt + 1, "retry_of": trial.number})
    elif reason == "interrupted" and trial.params:
        study.enqueue_trial(trial.params, user_attrs={"attempt": attempt, "retry_of": trial.number})
    return True


def count_trials(study) -> tuple[int, int, int]:
    """(finished that count, running, waiting) trials of the study."""
    finished = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state in FINISHED and not t.user_attrs.get("retried"):
            finished += 1
        elif state == "RUNNING":
            running += 1
        elif state == "WAITING":
            waiting += 1
    return finished, running, waiting


def worker_loop(
    study,
    space,
    target: int,
    context_for: Callable,
    on_start: Callable[[int], None] = lambda number: None,
    on_progress: ProgressFn = lambda *event: None,
    on_finish: Callable[[int, object], None] = lambda number, outcome: None,
    poll: float = 1.0,
    deadline: float | None = None,
) -> None:
    """Run trials of `study` until it holds `target` finished trials (see the module docstring).

    Raises `Interrupted` after recording the running trial as failed with reason `interrupted`.
    """
    cfg = space.study
    while True:
        reap_stale_trials(study, cfg.grace_period, cfg.max_retries)
        finished, running, waiting = count_trials(study)
        if finished >= target or (deadline is not None and time.monotonic() > deadline):
            return
        if finished + running >= target:
            time.sleep(poll)  # the others' trials may still finish, or die and need a retry
            continue
        trial = study.ask()
        on_start(trial.number)
        try:
            outcome = run_one_trial(study, trial, space, context_for, on_progress, cfg.max_retries, cfg.heartbeat_interval)
        except Interrupted:
            on_finish(trial.number, None)
            raise
        on_finish(trial.number, outcome)


def run_one_trial(study, trial, space, context_for: Callable, on_progress: ProgressFn,
                  max_retries: int, heartbeat_interval: float):
    """Run an asked trial under heartbeats and tell the study its outcome.

    On `Interrupted` the trial is failed as `interrupted` (and re-enqueued when it has
    parameters) before the exception goes on.
    """
    import optuna

    completed = lambda: study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))  # noqa: E731
    phase_writer = _PhaseWriter(study, trial._trial_id, on_progress)
    try:
        with Heartbeat(study, trial._trial_id, heartbeat_interval):
            outcome = run_search_trial(trial, space, context_for, phase_writer, completed)
    except Interrupted:
        fail_and_retry(study, study._storage.get_trial(trial._trial_id), "interrupted", max_retries)
        raise
    _tell(study, trial, outcome)
    return outcome


class _PhaseWriter:
    """Forwards progress to the local display, and records phase changes on the trial so that a
    parent process (or optuna-dashboard) can see what each worker is doing. Called every training
    step: it writes to the storage only when the phase changes."""

    def __init__(self, study, trial_id: int, forward: ProgressFn):
        self.storage, self.trial_id, self.forward, self.phase = study._storage, trial_id, forward, None

    def __call__(self, phase: str, step: int, total: int, loss: float | None = None) -> None:
        if phase != self.phase:
            self.phase = phase
            self.storage.set_trial_user_attr(self.trial_id, "phase", phase)
        self.forward(phase, step, total, loss)


def _tell(study, trial, outcome) -> None:
    import optuna

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

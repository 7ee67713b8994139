"""What keeps workers sharing one study honest: counts, heartbeats, reaping, retries, signals.

Any number of workers — processes on one machine (`--workers N`) or jobs on many machines
(`--storage URL`) — run the engine's loop (archsearch.search.engine.run_trials) against one
study; the storage is the only thing they share. This module holds what that loop relies on:

- **The count is the study's.** A worker starts a trial only while finished + running trials
  are below the target; at the target it waits for running trials to end (or to be found dead),
  then stops. Trials failed because their worker died or was interrupted do not count: their
  retry does. Workers that count at the same moment can each ask one more trial; a trial asked
  past the target (ranked by number among the trials that count) is failed at once as
  `skipped: ...`, marked `surplus`, and does not count either (archsearch.search.engine.surplus).
- **Heartbeats.** While a trial runs, a thread writes the user attribute `heartbeat` (UTC
  seconds) every `study.heartbeat_interval` seconds, for every storage alike (Optuna's own
  heartbeats exist only for RDB storages inside `study.optimize`). Before asking for a trial,
  a worker looks at every running trial whose heartbeat is older than `study.grace_period` —
  or whose worker is a dead process on this very host, or this process, which is not running
  it — and records it from its finished result on disk when it has one (the storage failed
  when its worker told it; archsearch.search.records), or else fails it with the reason
  `worker died: ...` and re-enqueues its parameters (at most `study.max_retries` times).
  Optuna 5's TPE treats running trials as bad points, so this cleanup also keeps sampling sane.
- **Records.** A finished trial's outcome goes to `trials/<number>/metrics.json` first, then to
  the storage. A storage that stays down past its retries (archsearch.search.retry) ends the
  worker with the error; the phase and heartbeat writes, which only inform, never end a trial.
- **Signals.** SIGINT and SIGTERM fail the running trial with reason `interrupted`, re-enqueue
  it for the next run, and end the worker with status 130 or 143.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import Interrupted
from .objective import failure_attrs
from .records import FINISHED, recover_result
from .storage import StoredTrial

__all__ = ["Interrupted", "handle_signals", "signal_handler", "reap_stale_trials", "fail_and_retry", "count_trials", "counts", "Heartbeat", "WORKER_ID"]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


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

    with signal_handler(raise_interrupted):
        yield


@contextmanager
def signal_handler(handler):
    """`handler` for SIGINT and SIGTERM while inside; the previous handlers afterwards (main thread only)."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Heartbeat:
    """Writes `heartbeat` on a running trial from a daemon thread until stopped.

    `Heartbeat.running` holds the storage ids of the trials this process is running now.
    """

    running: set[int] = set()

    def __init__(self, trial: StoredTrial, interval: float):
        self.trial, self.interval = trial, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="archsearch-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.trial.set_attr("worker", WORKER_ID)
        self.trial.set_attr("heartbeat", time.time())
        Heartbeat.running.add(self.trial.id)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        Heartbeat.running.discard(self.trial.id)
        self.stop_event.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.trial.set_attr("heartbeat", time.time())
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


def reap_stale_trials(study, grace_period: float, max_retries: int, study_dir: Path | None = None) -> list[int]:
    """Record (from their result in `study_dir`) or fail and re-enqueue the running trials of
    dead workers; returns their numbers."""
    import optuna

    reaped = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if StoredTrial.of(study, trial).id in Heartbeat.running:
            continue
        attrs = trial.user_attrs
        worker = attrs.get("worker")
        last = attrs.get("heartbeat") or (trial.datetime_start.timestamp() if trial.datetime_start else now)
        silent = now - last
        if worker == WORKER_ID:
            reason = "worker died: this process left it running"
        elif _pid_dead_here(worker):
            reason = f"worker died: process {worker} is gone"
        elif silent > grace_period:
            reason = f"worker died: no heartbeat from {worker or 'its worker'} for {silent:.0f}s"
        else:
            continue
        if study_dir is not None and recover_result(study, trial, study_dir):
            reaped.append(trial.number)
        elif fail_and_retry(study, trial, reason, max_retries):
            reaped.append(trial.number)
    return reaped


def fail_and_retry(study, trial, reason: str, max_retries: int) -> bool:
    """Mark a running trial failed with `reason` and enqueue its parameters again.

    Returns False when another worker got there first. The failed trial is marked `retried`
    so that it does not count towards the study's total; its retry does.
    """
    import optuna

    stored = StoredTrial.of(study, trial)
    attempt = int(trial.user_attrs.get("attempt", 0))
    will_retry = attempt < max_retries and bool(trial.params)
    try:
        for key, value in failure_attrs(reason).items():
            stored.set_attr(key, value)
        stored.set_attr("retried", will_retry or reason == "interrupted")
        if not stored.mark_failed():
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if will_retry:
        study.enqueue_trial(trial.params, user_attrs={"attempt": attempt + 1, "retry_of": trial.number})
    elif reason == "interrupted" and trial.params:
        study.enqueue_trial(trial.params, user_attrs={"attempt": attempt, "retry_of": trial.number})
    return True


def counts(trial) -> bool:
    """Whether a finished trial counts towards the study's total: not one that was retried (its
    retry counts) nor a surplus one (asked when the study was full; archsearch.search.engine)."""
    return trial.state.name in FINISHED and not trial.user_attrs.get("retried") and not trial.user_attrs.get("surplus")


def count_trials(study) -> tuple[int, int, int]:
    """(finished that count, running, waiting) trials of the study."""
    finished = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if counts(t):
            finished += 1
        elif state == "RUNNING":
            running += 1
        elif state == "WAITING":
            waiting += 1
    return finished, running, waiting

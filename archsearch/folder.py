"""The study folder, kept by an observer of the engine; and `run_study`, a search written into it.

    summary = run_study(load_space("search_spaces/quickstart.yaml"))   # archsearch's Python API
    summary.table, summary.front                                        # as written to trials.csv

A study folder `<results_dir>/<study name>/` holds the embedded storage and the resolved space
(written by archsearch.search.study), and what `StudyFolder` keeps from the engine's events
(archsearch.search.events): `trials.csv` and `trials.parquet`, rewritten atomically after every
trial, and `trials/<number>/` with `config.yaml` and `metrics.json` as the storage holds them.

Under `study.checkpoints: front` the folder also keeps disk use bounded: after every trial it
deletes the `checkpoint.pt` of every finished trial that is not on the Pareto front of the
feasible completed trials (archsearch.results.front_of, the front the report draws). A trial
that leaves the front never comes back to it (the front only ever gains dominating points), so
a deleted checkpoint is never missed; a running trial's is never touched. Each worker process
prunes its own folder, and on several machines each machine its own trials.
The search layer only emits events; this layer turns them into files, so `archsearch run`,
its worker processes and `archsearch ablate` keep their folders alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import METRICS
from .results import front_of, trials_dataframe, write_tables
from .search.events import Observer
from .search.records import CHECKPOINT_NAME, write_trial_files
from .search.study import run_search

__all__ = ["StudyFolder", "StudySummary", "run_study", "prune_checkpoints"]


class StudyFolder(Observer):
    """Writes the tables and the trial files of a study folder as the engine's events arrive, and
    prunes checkpoints under `checkpoints="front"` (`directions` then say the front's sense; the
    objectives' natural ones by default). It holds only a path and names, so it pickles: each
    worker process runs its own."""

    def __init__(self, study_dir: str | Path, objectives: list[str], directions: list[str] | None = None,
                 checkpoints: str = "none"):
        self.study_dir, self.objectives = Path(study_dir), list(objectives)
        self.directions = list(directions) if directions is not None else [METRICS[o].direction for o in objectives]
        self.checkpoints = checkpoints

    def study_changed(self, trials, done, running) -> None:
        self._tables(trials)

    def trial_finished(self, trial, trials, done) -> None:
        write_trial_files(self.study_dir, trial)
        self._tables(trials)

    def study_stopped(self, trials, done) -> None:
        self._tables(trials)
        for trial in trials:  # those of other processes too, and any whose record failed halfway
            write_trial_files(self.study_dir, trial)

    def _tables(self, trials) -> None:
        df = trials_dataframe(trials, self.objectives)
        write_tables(df, self.study_dir)
        if self.checkpoints == "front":
            prune_checkpoints(self.study_dir, df, self.objectives, self.directions)


def prune_checkpoints(study_dir: Path, df, objectives: list[str], directions: list[str]) -> list[int]:
    """Delete the checkpoints of the finished trials of `df` (a results table) that are off its
    front; the trial numbers whose checkpoint went."""
    if df.empty:
        return []
    front = set(front_of(df, objectives, directions)["number"].astype(int))
    finished = df[df["state"].isin(("COMPLETE", "PRUNED", "FAIL"))]["number"].astype(int)
    deleted = []
    for number in finished:
        path = Path(study_dir) / "trials" / str(number) / CHECKPOINT_NAME
        if number not in front and path.exists():
            path.unlink(missing_ok=True)  # another worker may be pruning the same folder
            deleted.append(int(number))
    return deleted


@dataclass
class StudySummary:
    name: str
    study_dir: Path
    storage: str
    trials: int  # finished trials that count towards the study's total
    completed: int
    table: Any  # the results table (pandas DataFrame), as written to trials.csv
    front: Any  # its rows on the Pareto front of the feasible completed trials (archsearch.results.front_of)
    objectives: list[str]
    problems: list[str] = field(default_factory=list)  # workers that died while the study still reached its count
    stopped: int = 0  # trials stopped early (PRUNED: by study.stopping or a pruner)

    def fail_reasons(self, limit: int = 3) -> list[tuple[int, str]]:
        """The commonest reasons trials failed, as (count, reason), commonest first."""
        if self.table.empty or "fail_reason" not in self.table.columns:
            return []
        reasons = Counter(r for r in self.table["fail_reason"] if isinstance(r, str) and r)
        return [(n, reason) for reason, n in reasons.most_common(limit)]


def run_study(
    space,
    results_dir: str | Path = "results",
    storage: str | None = None,
    trials: int | None = None,
    device: str | None = None,
    view: Observer | None = None,
    workers: int = 1,
    gpus: list[int] | None = None,
) -> StudySummary:
    """Run (or resume) the study a space describes until it holds `trials` finished trials, into
    its folder; `view` (e.g. archsearch.report.live.StudyDisplay) hears the events too.

    See archsearch.search.study.run_search for workers, bad input and signals.
    """
    from .search.worker import count_trials

    folder = StudyFolder(Path(results_dir) / space.study.name, [o.metric for o in space.objectives],
                         [o.direction for o in space.objectives], space.study.checkpoints)
    run = run_search(space, results_dir, storage, trials, device, observers=[folder, view], workers=workers, gpus=gpus,
                     worker_observers=[folder])
    df = trials_dataframe(run.study.get_trials(deepcopy=False), run.objectives)
    completed, stopped = ((int((df["state"] == state).sum()) if not df.empty else 0) for state in ("COMPLETE", "PRUNED"))
    return StudySummary(run.name, run.study_dir, run.storage, count_trials(run.study)[0], completed, df,
                        front_of(df, run.objectives, [d.name.lower() for d in run.study.directions]),
                        run.objectives, run.problems, stopped)

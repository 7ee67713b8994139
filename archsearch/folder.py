"""The study folder, kept by an observer of the engine; and `run_study`, a search written into it.

    summary = run_study(load_space("search_spaces/quickstart.yaml"))   # archsearch's Python API
    summary.table, summary.front                                        # as written to trials.csv

A study folder `<results_dir>/<study name>/` holds the embedded storage and the resolved space
(written by archsearch.search.study), and what `StudyFolder` keeps from the engine's events
(archsearch.search.events): `trials.csv` and `trials.parquet`, rewritten atomically after every
trial, and `trials/<number>/` with `config.yaml` and `metrics.json` as the storage holds them.
The search layer only emits events; this layer turns them into files, so `archsearch run`,
its worker processes and `archsearch ablate` keep their folders alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import front_of, trials_dataframe, write_tables
from .search.events import Observer
from .search.records import write_trial_files
from .search.study import run_search

__all__ = ["StudyFolder", "StudySummary", "run_study"]


class StudyFolder(Observer):
    """Writes the tables and the trial files of a study folder as the engine's events arrive.
    It holds only a path and names, so it pickles: each worker process runs its own."""

    def __init__(self, study_dir: str | Path, objectives: list[str]):
        self.study_dir, self.objectives = Path(study_dir), list(objectives)

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
        write_tables(trials_dataframe(trials, self.objectives), self.study_dir)


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

    folder = StudyFolder(Path(results_dir) / space.study.name, [o.metric for o in space.objectives])
    run = run_search(space, results_dir, storage, trials, device, observers=[folder, view], workers=workers, gpus=gpus,
                     worker_observers=[folder])
    df = trials_dataframe(run.study.get_trials(deepcopy=False), run.objectives)
    completed, stopped = ((int((df["state"] == state).sum()) if not df.empty else 0) for state in ("COMPLETE", "PRUNED"))
    return StudySummary(run.name, run.study_dir, run.storage, count_trials(run.study)[0], completed, df,
                        front_of(df, run.objectives, [d.name.lower() for d in run.study.directions]),
                        run.objectives, run.problems, stopped)

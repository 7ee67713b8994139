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

The tables are rewritten after every trial, unless a rewrite takes longer than
`TABLE_ALWAYS_S` and rewriting after every trial would take more than `TABLE_SHARE` of the
study's time: a study of thousands of fast trials (rewriting 5,000 rows takes about a second)
then rewrites them as often as keeps them within that share, and always when the study stops.
The rows of finished trials are cached between rewrites (`trials_dataframe(rows=...)`), so only
new and running trials are read again.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import WriteFailed, WriteWarning
from .metrics import METRICS
from .results import front_of, trials_dataframe, write_tables
from .search.events import Observer
from .search.records import CHECKPOINT_NAME, FINISHED, write_trial_files
from .search.study import run_search

__all__ = ["StudyFolder", "StudySummary", "run_study", "prune_checkpoints", "TABLE_SHARE"]

TABLE_SHARE = 0.05  # the most of a study's time that rewriting its tables may take ...
TABLE_ALWAYS_S = 0.1  # ... once a rewrite takes longer than this (a few hundred trials)


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
        self._rows: dict = {}  # finished trials' table rows, by number
        self._written, self._cost = -math.inf, 0.0  # when the tables were last written, and what it took (s)

    def study_changed(self, trials, done, running) -> None:
        self._tables(trials)

    def trial_finished(self, trial, trials, done) -> None:
        with _warned("its config.yaml and metrics.json", trial.number):
            write_trial_files(self.study_dir, trial)
        self._tables(trials)

    def study_stopped(self, trials, done) -> None:
        self._tables(trials, force=True)
        unwritten = None
        for trial in trials:  # those of other processes too, and any whose record failed halfway
            try:
                write_trial_files(self.study_dir, trial)
            except WriteFailed as exc:
                unwritten = exc
        if unwritten is not None:  # one line: the disk that refused one file refuses the others
            warnings.warn(f"the trials' config.yaml and metrics.json not all rewritten: {unwritten}", WriteWarning)

    def _tables(self, trials, force: bool = False) -> None:
        start = time.monotonic()
        if not force and self._cost > TABLE_ALWAYS_S and start - self._written < self._cost / TABLE_SHARE:
            return
        df = trials_dataframe(trials, self.objectives, rows=self._rows)
        with _warned("trials.csv and trials.parquet (`archsearch results` rewrites them from the storage)"):
            write_tables(df, self.study_dir)
        if self.checkpoints == "front":
            prune_checkpoints(self.study_dir, df, self.objectives, self.directions)
        self._written = time.monotonic()
        self._cost = self._written - start


@contextmanager
def _warned(what: str, number: int | None = None):
    """A file the storage can rewrite at any time (a table, a trial's copy of its record) that
    cannot be written is one warning line; the study goes on."""
    try:
        yield
    except WriteFailed as exc:
        whose = f"trial {number}: " if number is not None else ""
        warnings.warn(f"{whose}{what} not written: {exc}", WriteWarning, stacklevel=3)


def prune_checkpoints(study_dir: Path, df, objectives: list[str], directions: list[str]) -> list[int]:
    """Delete the checkpoints of the finished trials of `df` (a results table) that are off its
    front; the trial numbers whose checkpoint went."""
    kept = {int(path.parent.name): path for path in Path(study_dir).glob(f"trials/*/{CHECKPOINT_NAME}")
            if path.parent.name.isdigit()}
    if df.empty or not kept:
        return []
    front = set(front_of(df, objectives, directions)["number"].astype(int))
    finished = set(df[df["state"].isin(FINISHED)]["number"].astype(int))
    deleted = sorted(number for number in kept if number in finished and number not in front)
    for number in deleted:
        kept[number].unlink(missing_ok=True)  # another worker may be pruning the same folder
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
    baselines: Any = None  # the baselines' results table (study.baselines; archsearch.search.baselines), if any

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

    See archsearch.search.study.run_search for workers, bad input and signals. Then the
    baselines of `study.baselines` that have no finished trial are trained, in this process
    (archsearch.search.baselines).
    """
    from .search.baselines import BASELINES_FOLDER, run_baselines
    from .search.worker import count_trials

    folder = StudyFolder(Path(results_dir) / space.study.name, [o.metric for o in space.objectives],
                         [o.direction for o in space.objectives], space.study.checkpoints)
    run = run_search(space, results_dir, storage, trials, device, observers=[folder, view], workers=workers, gpus=gpus,
                     worker_observers=[folder])
    beside = StudyFolder(run.study_dir / BASELINES_FOLDER, folder.objectives, folder.directions, space.study.checkpoints)
    baselines = run_baselines(space, results_dir, storage, device, observers=[beside], search_study=run.study)
    df = trials_dataframe(run.study.get_trials(deepcopy=False), run.objectives)
    completed, stopped = ((int((df["state"] == state).sum()) if not df.empty else 0) for state in ("COMPLETE", "PRUNED"))
    return StudySummary(run.name, run.study_dir, run.storage, count_trials(run.study)[0], completed, df,
                        front_of(df, run.objectives, [d.name.lower() for d in run.study.directions]),
                        run.objectives, run.problems, stopped,
                        None if baselines is None else trials_dataframe(baselines.study.get_trials(deepcopy=False),
                                                                         run.objectives))

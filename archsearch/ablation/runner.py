"""Running an ablation: every network × seed as one trial of an Optuna study, resumable.

    spec = load_ablation("search_spaces/ablations/seed_design_choices.yaml")
    run = run_ablation(spec, "results")         # trains what is missing
    runs = run.runs                             # one row per network × seed: variant, seed, metrics

The study folder has the layout of `archsearch run`'s (`optuna.journal` or `--storage`,
`trials.csv`/`.parquet` with an extra `variant` column, `trials/<number>/`, kept by the same
archsearch.folder.StudyFolder), plus the resolved `ablation.yaml`. The trials run through the
one engine (archsearch.search.engine) from a `QueueSource` of the network × seed pairs: each
trial is a fixed space (`AblationSpec.trial_space`), trained, measured and recorded exactly like
a search trial; this module adds only the source, its progress line and the report.

A network × seed is identified by its config hash and settings hash (the training seed is part
of the settings), not by its name: a rerun trains only the pairs without a finished trial, an
edited variant is retrained, a renamed one is not. Several `archsearch ablate` processes on the
same folder share the work (see `QueueSource`; the report uses a pair's first trial). Dead
workers and signals are handled as in `archsearch run` (archsearch.search.worker): a running
trial writes heartbeats; SIGINT/SIGTERM fail it as `interrupted`; a trial whose worker died (no
heartbeat for `grace_period`, or a gone process of this host) is failed as `worker died`.
Either way its pair counts as not done, so the next run trains it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.text import Text

from ..folder import StudyFolder
from ..io import atomic_write_text
from ..metrics import QUALITY_METRICS
from ..report.live import LiveView, phase_line
from ..schema.ablation import ABLATION_OBJECTIVES, AblationSpec
from ..search.engine import Fixed, QueueSource, finished, observing, run_trials, unfinished
from ..search.events import Broadcast, Observer

__all__ = ["AblationRun", "AblationReport", "ablate", "run_ablation", "open_ablation_study", "collect_runs", "pair_identities",
           "QueueDisplay"]

_OBJECTIVES = list(ABLATION_OBJECTIVES)  # schema.ablation says why the raw speed
_RUN_METRICS = (*_OBJECTIVES, *QUALITY_METRICS, "params", "flops")  # what collect_runs keeps of each trial


@dataclass
class AblationRun:
    study_dir: Path
    storage: str
    runs: pd.DataFrame  # one row per finished network × seed (see collect_runs)
    pending: list[tuple[str, int]]  # pairs without a finished trial (running elsewhere, or left by the timeout)


def pair_identities(spec: AblationSpec) -> dict[tuple[str, int], tuple[str, str]]:
    """(variant, seed) -> (config hash, settings hash) for every trial the ablation needs, in the
    order they run: seed by seed, each round the base then every variant. A base and a variant of
    one seed thus run minutes apart, not the whole ablation apart, so a drift in the machine's
    speed (other jobs, thermal limits) hardly enters their paired throughput difference; and
    after the first round every variant already has a number."""
    from ..search.objective import config_hash, settings_hash

    configs = spec.variant_configs()
    out = {}
    for seed in range(spec.seeds):
        for name, config in configs:
            out[(name, seed)] = (config_hash(config), settings_hash(spec.train_config(seed, name), spec.trial_space(name, seed)))
    return out


def open_ablation_study(spec: AblationSpec, study_dir: Path, storage: str | None = None):
    """Create or load the ablation's Optuna study (the objectives of a default space file)."""
    from ..search.storage import open_storage
    from ..search.study import create_study, quiet_optuna

    quiet_optuna()
    study = create_study(spec.trial_space("base", 0), open_storage(storage, study_dir))
    if study.user_attrs.get("kind") != "ablation" and study.get_trials(deepcopy=False):
        from ..errors import ConfigError, ConfigErrors

        raise ConfigErrors([ConfigError("study.name", f"the study {study.study_name!r} in {study_dir} is a search, not an "
                                                      "ablation; use another study name or --results-dir")])
    study.set_user_attr("kind", "ablation")
    return study


def run_ablation(
    spec: AblationSpec,
    results_dir: str | Path = "results",
    storage: str | None = None,
    device: str | None = None,
    console: Console | None = None,
    live: bool = True,
) -> AblationRun:
    """Train every network × seed of `spec` that has no finished trial yet; return all runs."""
    from ..search.preflight import preflight
    from ..search.storage import describe_storage
    from ..search.worker import handle_signals

    console = console or Console()
    identities = pair_identities(spec)
    view = QueueDisplay(console, spec.study.name, len(identities), enabled=live and console.is_terminal)
    study_dir, context = preflight(results_dir, spec.study.name, storage, spec.data, spec.eval,
                                   spec.train.model_dump(), device or spec.study.device,
                                   "--device" if device else "study.device", on_load=view.data_loaded, spec=spec)
    study = open_ablation_study(spec, study_dir, storage)
    atomic_write_text(study_dir / "ablation.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    source = QueueSource({(name, seed): Fixed(ident, {"variant": name, "seed": seed}, f"{name}, seed {seed}")
                          for (name, seed), ident in identities.items()}, lambda pair: spec.trial_space(*pair))
    cfg = spec.trial_space("base", 0).study  # heartbeat interval, grace period and retries of a space file
    deadline = time.monotonic() + spec.study.timeout if spec.study.timeout else None
    hear = Broadcast([StudyFolder(study_dir, _OBJECTIVES), view])
    with view, observing(study, source, hear), handle_signals():
        run_trials(study, source, context, hear, study_cfg=cfg, study_dir=study_dir, deadline=deadline)

    trials = study.get_trials(deepcopy=False)
    return AblationRun(study_dir, describe_storage(storage, study_dir), collect_runs(trials, identities),
                       unfinished(trials, identities))


def collect_runs(trials: list, identities: dict[tuple[str, int], tuple[str, str]]) -> pd.DataFrame:
    """One row per network × seed with a finished trial: the first completed one, else the last
    failure. Columns: variant, seed, number, state, val_loss, train_throughput, the quality
    metrics (fd, ...; empty unless measured), params, flops, fail_reason, reused_from."""
    best: dict[tuple[str, int], Any] = {}
    by_identity = {ident: pair for pair, ident in identities.items()}
    for t in sorted(trials, key=lambda t: t.number):
        pair = by_identity.get((t.user_attrs.get("config_hash"), t.user_attrs.get("settings_hash")))
        if pair is None or not finished(t):
            continue
        held = best.get(pair)
        if held is None or (held.state.name != "COMPLETE" and (t.state.name == "COMPLETE" or t.number > held.number)):
            best[pair] = t
    rows = []
    for (name, seed), t in sorted(best.items(), key=lambda kv: list(identities).index(kv[0])):
        attrs = t.user_attrs
        rows.append({"variant": name, "seed": seed, "number": t.number, "state": t.state.name,
                     **{k: attrs.get(k) for k in (*_RUN_METRICS, "fail_reason", "reused_from")}})
    columns = ["variant", "seed", "number", "state", *_RUN_METRICS, "fail_reason", "reused_from"]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class AblationReport:
    study_dir: Path
    storage: str
    comparisons: list  # archsearch.ablation.stats.Comparison, the base first
    files: list[Path]  # ablation.md, ablation.csv, plots/forest.png
    pending: list[tuple[str, int]]


def ablate(
    spec: AblationSpec,
    results_dir: str | Path = "results",
    storage: str | None = None,
    device: str | None = None,
    console: Console | None = None,
    live: bool = True,
    train: bool = True,
) -> AblationReport:
    """`archsearch ablate`: run what is missing (unless `train` is false), then compare every
    variant with the base and write the report files into the study folder."""
    from ..search.storage import JOURNAL_NAME, describe_storage
    from .report import write_report
    from .stats import compare_variants

    study_dir = Path(results_dir) / spec.study.name
    if train:
        run = run_ablation(spec, results_dir, storage, device, console, live)
        runs, pending = run.runs, run.pending
    else:
        if storage is None and not (study_dir / JOURNAL_NAME).exists():
            from ..errors import ConfigError, ConfigErrors

            raise ConfigErrors([ConfigError(str(study_dir), f"holds no ablation yet (no {JOURNAL_NAME}); run it first")])
        if storage is None:  # a damaged journal: one line naming it (as every command reads a study folder)
            from ..search.storage import open_storage
            from ..search.study_files import check_journal, replayed

            check_journal(study_dir / JOURNAL_NAME)
            replayed(study_dir / JOURNAL_NAME, lambda: open_storage(None, study_dir))
        trials = open_ablation_study(spec, study_dir, storage).get_trials(deepcopy=False)
        identities = pair_identities(spec)
        runs, pending = collect_runs(trials, identities), unfinished(trials, identities)
    comparisons = compare_variants(runs, {name: spec.description(name) for name in spec.names}, spec.seeds,
                                   metrics=spec.compared)
    files = write_report(comparisons, study_dir, spec.study.name, spec.seeds)
    return AblationReport(study_dir, describe_storage(storage, study_dir), comparisons, files, pending)


def _trial_name(number: int, label: str) -> str:
    return f"trial {number}" + (f" ({label})" if label else "")


class QueueDisplay(LiveView, Observer):
    """The progress of a queue of fixed trials (an ablation's, a verification's): one live status
    line in a terminal, and one printed line per finished trial. In the parent of several worker
    processes (`verify --workers`), which runs no trial itself, the lines come from the study as
    it changes: each trial finished since the last look, named by `label(trial)`, and the live
    line lists the running ones."""

    def __init__(self, console: Console, name: str, total: int, enabled: bool,
                 label: Callable[[Any], str] | None = None):
        self.console, self.name, self.total, self.enabled = console, name, total, enabled
        self.label_of = label or (lambda trial: "")
        self.done, self.label, self.started = 0, "", time.perf_counter()
        self.phase, self.step = "", (0, 0, None)  # (step, total, loss)
        self.shown: set[int] | None = None  # finished trials printed or there at the start (None: not looked yet)
        self.running: list[tuple[int, str]] = []  # (trial, phase) of other processes' trials

    def data_loaded(self, lines: list[str]) -> None:  # before the live display starts
        self.print_lines(lines)

    def study_changed(self, trials, done: int, running) -> None:
        self.done, self.running = done, list(running)
        ended = {t.number: t for t in trials if finished(t)}
        if self.shown is None:  # what the study held when this run began is not news
            self.shown = set(ended)
        for number in sorted(set(ended) - self.shown):
            trial = ended[number]
            seconds = trial.duration.total_seconds() if trial.duration is not None else None
            self._print_finished(trial, _trial_name(number, self.label_of(trial)), seconds)
        self._refresh()

    def trial_started(self, number: int, label: str) -> None:
        self.label, self.started = _trial_name(number, label), time.perf_counter()
        self.progress("starting", 0, 0)

    def progress(self, phase: str, step: int, total: int, loss: float | None = None) -> None:
        changed = phase != self.phase
        self.phase, self.step = phase, (step, total, loss)
        if changed:
            self._refresh()  # steps are picked up by the next automatic refresh

    def trial_finished(self, trial, trials, done: int) -> None:
        self.done = done
        self._print_finished(trial, self.label, time.perf_counter() - self.started)

    def _print_finished(self, trial, name: str, seconds: float | None) -> None:
        if self.shown is not None:
            self.shown.add(trial.number)
        attrs = trial.user_attrs
        if trial.state.name == "COMPLETE":
            what = f"val_loss {attrs.get('val_loss', float('nan')):.4g}, {attrs.get('train_throughput', float('nan')):.4g} images/s"
            what += "".join(f", {m} {attrs[m]:.4g}" for m in QUALITY_METRICS if attrs.get(m) is not None)
            what += f" (reused trial {attrs['reused_from']})" if attrs.get("reused_from") is not None else ""
        else:
            what = f"failed: {attrs.get('fail_reason', '')}"[:120]
        took = "" if seconds is None else f", {seconds:.0f}s"
        self.print_lines([f"{name}: {what}  [{self.done}/{self.total}{took}]"], style="")

    def _render(self) -> Text:
        elapsed = time.perf_counter() - self.started
        if not self.label and self.running:  # the parent of workers: what they run
            others = ", ".join(f"trial {n} ({phase})" for n, phase in self.running)
            return Text(f"{self.name}: {self.done}/{self.total} done  running: {others}", style="cyan")
        return Text(f"{self.name}: {self.done}/{self.total} done  {self.label}: {phase_line(self.phase, *self.step)} ({elapsed:.0f}s)", style="cyan")

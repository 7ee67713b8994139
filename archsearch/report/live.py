"""The live view of a running study: progress, the current trial's phase, the Pareto front.

`StudyDisplay` is an observer of the engine's events (archsearch.search.events); `archsearch run`
passes it to `run_study`, beside the study folder's observer. It warns while the machine is
oversubscribed (archsearch.load: a load average above the usable CPUs, or more torch threads in
this study's running trials than CPUs), since every throughput timed then is slowed by it.
"""

from __future__ import annotations

import time

import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from ..load import machine_load, oversubscription
from ..results import front_of, trials_dataframe
from ..search.events import Observer
from .console import format_metric, quality_columns
from .effects import varying_columns
from .tables import Column, TextTable, fit

__all__ = ["LiveView", "StudyDisplay", "front_table", "phase_line", "trial_line"]


def front_table(front: pd.DataFrame, objectives: list[str], title: str = "Pareto front", limit: int = 12) -> TextTable:
    """The front's trials with their objectives, the sample quality they measured (if any),
    parameters and the fields they differ in; on a narrow terminal flops go first, then the
    quality but FD, then the fields (the last first), then params, then FD."""
    extra = [c for c in (*quality_columns(front), "params", "flops") if c not in objectives and c in front.columns]
    distinguishing = varying_columns(front)[:4]
    priority = {"params": 40, "flops": 10, **{c: 45 if c == "fd" else 20 for c in quality_columns(front)}}
    columns = [Column("trial", priority=100)]
    columns += [Column.metric(name, priority=90 - i) for i, name in enumerate(objectives)]
    columns += [Column.metric(name, priority=priority[name]) for name in extra]
    columns += [Column(name, priority=30 - i, justify="left", wrap=True)
                for i, name in enumerate(distinguishing)]
    caption = f"the first {limit} of {len(front)}" if len(front) > limit else ""
    table = TextTable(title, columns, caption=caption)
    for _, row in front.head(limit).iterrows():
        cells = [str(int(row["number"]))]
        cells += [format_metric(n, row.get(n)) for n in objectives + extra]
        cells += [format_metric(n, row.get(n)) for n in distinguishing]
        table.add_row(*cells)
    return table


def trial_line(trial) -> str:
    """`trial 7: complete`, `trial 3: fail (error: ...)`, or for a trial stopped early
    `trial 5: pruned (stopped at rung 1 (step 60): position 3 of 4 at this rung (keeps the top 2))`."""
    state, attrs = trial.state.name.lower(), trial.user_attrs
    reason = attrs.get("fail_reason") or attrs.get("stop_reason") or ("pruned" if state == "pruned" else "")
    return f"trial {trial.number}: {state}" + (f" ({reason[:100]})" if reason else "")


def phase_line(phase: str, step: int, total: int, loss: float | None) -> str:
    """`training step 12/60, loss 0.0931`, or just the phase outside training."""
    if phase != "training" or not total:
        return phase
    return f"{phase} step {step}/{total}" + (f", loss {loss:.4g}" if loss is not None else "")


class LiveView:
    """A context manager around rich's Live that shows `_render()`; nothing live when disabled.

    Live calls `_render()` on every automatic refresh (4 per second), so what it shows — the
    elapsed time above all — moves even while no event arrives. Subclasses set `console` and
    `enabled`, update their state on events (cheaply: progress comes every training step) and
    call `_refresh()` to show a change at once."""

    console: Console
    enabled: bool
    live: Live | None = None

    def __enter__(self):
        if self.enabled:
            self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def print_lines(self, lines: list[str], style: str = "dim") -> None:
        """Print above the live area (or plainly when not live)."""
        console = self.live.console if self.live is not None else self.console
        for line in lines:
            console.print(line, style=style, markup=False, highlight=False)

    def _render(self):
        raise NotImplementedError


class StudyDisplay(LiveView, Observer):
    """Rich Live rendering; `enabled=False` prints one line per finished trial instead."""

    def __init__(self, console: Console, name: str, total: int, objectives: list[str], directions: list[str], enabled: bool = True):
        self.console = console
        self.name = name
        self.total = total
        self.objectives = objectives
        self.directions = directions
        self.enabled = enabled
        self.done = 0
        self.trial: int | None = None
        self.phase = "starting"
        self.step = (0, 0)
        self.loss: float | None = None
        self.phase_start = time.perf_counter()
        self.front = pd.DataFrame()
        self.running: list[tuple[int, str]] = []  # (trial, phase) of other processes' trials
        self.seen_stops: set[int] | None = None     # trials stopped early already shown (None: none seen yet)
        self.threads: int | None = None              # torch threads the last finished trial trained with
        self.warning: str | None = None              # why the machine is oversubscribed, while it is

    def progress(self, phase: str, step: int, total: int, loss: float | None = None) -> None:
        changed = phase != self.phase
        if changed:
            self.phase_start = time.perf_counter()
        self.phase, self.step, self.loss = phase, (step, total), loss
        if changed:
            self._refresh()  # steps are picked up by the next automatic refresh

    def data_loaded(self, lines: list[str]) -> None:
        self.print_lines(lines)

    def trial_started(self, number: int, label: str) -> None:
        self.trial = number
        self.progress("sampling", 0, 0)

    def trial_finished(self, trial, trials, done: int) -> None:
        self.done = done
        self.front = self.compute_front(trials_dataframe(trials, self.objectives))
        if not self.enabled:
            self.console.print(f"{trial_line(trial)}  [{done}/{self.total}]", markup=False, highlight=False)
        self._show_stops(trials, printed=None if self.enabled else trial.number)
        attrs = trial.user_attrs  # the threads it trained with; a trial from before they were recorded: its timing's
        self.threads = attrs.get("train_threads") or attrs.get("threads") or self.threads
        self.check_load()
        self._refresh()

    def check_load(self, load: dict | None = None) -> None:
        """Read the machine's load (or take `load`) and warn when it is oversubscribed: in the
        live area while it lasts, and as a printed line each time it starts."""
        load = load or machine_load()
        busy = None if self.threads is None else self.threads * max(1, len(self.running))
        warning = oversubscription(load.get("load_avg"), load.get("cpu_count"), busy)
        if warning and not self.warning:
            self.print_lines([f"warning: {warning}"], style="yellow")
        self.warning = warning

    def _show_stops(self, trials, printed: int | None = None) -> None:
        """Print each trial stopped early once, as it is seen (this process's, and in the parent
        of several workers the workers'), but not trial `printed`, whose line says it already."""
        seen = self.seen_stops or set()
        new = [t for t in trials if t.state.name == "PRUNED" and t.number not in seen]
        self.seen_stops = seen | {t.number for t in new}
        self.print_lines([trial_line(t) for t in new if t.number != printed], style="yellow")

    def compute_front(self, df: pd.DataFrame) -> pd.DataFrame:
        return front_of(df, self.objectives, self.directions)

    def study_changed(self, trials, done: int, running: list[tuple[int, str]]) -> None:
        """Update from the storage (at the start, and in the parent of several workers)."""
        if not self.enabled and done > self.done:
            self.console.print(f"trials done {done}/{self.total}", markup=False, highlight=False)
        if self.seen_stops is None:  # the study as it stood when the run began: its stops are old news
            self.seen_stops = {t.number for t in trials if t.state.name == "PRUNED"}
        self._show_stops(trials)
        self.done, self.running = done, running
        self.front = self.compute_front(trials_dataframe(trials, self.objectives))
        self.check_load()
        self._refresh()

    def _render(self):
        head = Text.assemble((f"{self.name}", "bold"), f"  trials done {self.done}/{self.total}")
        lines = [head]
        if self.trial is not None:
            elapsed = time.perf_counter() - self.phase_start
            lines.append(Text(f"trial {self.trial}: {phase_line(self.phase, *self.step, self.loss)}  ({elapsed:.0f}s)",
                              style="cyan"))
        for number, phase in self.running:
            lines.append(Text(f"trial {number}: {phase}", style="cyan"))
        if self.warning:
            lines.append(Text(self.warning, style="yellow"))
        if not self.front.empty:
            table = front_table(self.front, self.objectives, title=f"Pareto front ({len(self.front)} trials)")
            lines.append(fit(table, self.console.width))
        return Group(*lines)

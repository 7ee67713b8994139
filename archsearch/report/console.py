"""Renderings shared by the commands: a metric's value as text, a trial's metrics, a progress bar
for training."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pandas as pd

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from ..metrics import METRICS, QUALITY_METRICS
from .tables import Column, TextTable, markdown, show

__all__ = ["metrics_table", "results_table", "print_results", "RESULT_FORMATS", "print_data_lines",
           "training_progress", "format_metric", "quality_columns", "QUALITY_COLUMNS"]

# The sample-quality phase's metrics and, beside them, what the phase cost.
QUALITY_COLUMNS = (*QUALITY_METRICS, "quality_seconds")


def quality_columns(df: pd.DataFrame) -> list[str]:
    """The quality columns (`QUALITY_COLUMNS`) of `df` that some row measured: none for a study
    that did not measure sample quality."""
    return [c for c in QUALITY_COLUMNS if c in df.columns and df[c].notna().any()]


def format_metric(key: str, value: Any) -> str:
    """A metric's value as text, as its registry entry says (counts with thousands separators,
    other numbers to 4 significant digits); a name outside the registry by its value's type."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    kind = METRICS[key].format if key in METRICS else None
    if kind == "count" and isinstance(value, (int, float)):
        return f"{int(value):,}"
    if kind == "flag":
        return "yes" if bool(value) else "no"
    if kind == "curve" and isinstance(value, list):
        return " ".join(f"{'–' if v is None else format(v, '.3g')}@{s}" for s, v in value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "  ".join(f"{v:.4g}" for v in value)
    return str(value)


def metrics_table(metrics: dict[str, Any], title: str = "trial") -> TextTable:
    """A trial's metrics, one per row in the registry's order, with what each means (print it
    with `tables.show`)."""
    table = TextTable(title, [Column("metric", priority=3, justify="left"), Column("value", priority=2, wrap=True),
                              Column("unit / note", priority=1, justify="left", wrap=True, style="dim")])
    unmeasured = () if metrics.get("quality") else QUALITY_COLUMNS  # no rows of "–" for a run without the phase
    for info in METRICS.values():
        if info.name in unmeasured:
            continue
        if info.shown and info.name in metrics and (metrics[info.name] or info.format != "curve"):  # "–" if unmeasured
            note = info.about
            if info.name == "peak_mem_mb" and metrics.get("peak_mem_source") == "cpu_proxy":
                note = "MiB, CPU proxy: weights+grads+AdamW+saved activations"
            table.add_row(info.name, format_metric(info.name, metrics[info.name]), note)
    return table


def results_table(df: pd.DataFrame) -> TextTable:
    """`archsearch results`: one row per trial; on a narrow terminal flops, duration, params,
    the failure reason and the normalized speed go before the objectives do. A study that measured
    sample quality has its columns after val_loss (FD kept longest, its time dropped first)."""
    priority = {"number": 9, "state": 8, "val_loss": 7,
                **{c: 6 if c == "fd" else 1 for c in quality_columns(df)},
                "train_throughput": 7, "train_throughput_normalized": 6, "params": 4, "flops": 2, "duration_s": 3,
                "fail_reason": 5}
    # A speed against the reference only for a study whose trials were timed against one.
    names = [c for c in priority if c in df.columns and not (c in METRICS and METRICS[c].needs_reference
                                                             and df[c].isna().all())]
    columns = [Column(c, priority=priority[c], justify="left", wrap=True) if c in ("state", "fail_reason")
               else Column.metric(c, priority=priority[c]) for c in names]
    table = TextTable(f"{len(df)} trials", columns)
    for _, row in df.iterrows():
        table.add_row(*[format_metric(c, row[c]) if c != "number" else str(int(row[c])) for c in names])
    return table


RESULT_FORMATS = ("table", "csv", "json", "md")  # `archsearch results --format`


def print_results(df: pd.DataFrame, format: str, console: Console) -> None:
    """The results table in one of `RESULT_FORMATS`: `table` fitted to the terminal (plain lines
    in a pipe), `md` the same columns as Markdown, `csv` and `json` every column."""
    if format == "csv":
        console.file.write(df.to_csv(index=False))
    elif format == "json":
        console.file.write(df.to_json(orient="records", indent=1) + "\n")
    elif format == "md":
        console.file.write(markdown(results_table(df)) + "\n")
    else:
        show(console, results_table(df))


def print_data_lines(console: Console, lines: list[str]) -> None:
    """What `ImageData.describe()` says about the data read, dim; files skipped in yellow."""
    for line in lines:
        console.print(line, style="yellow" if line.startswith("skipped ") else "dim", markup=False, highlight=False)


@contextmanager
def training_progress(console: Console, enabled: bool = True, batch_size: int | None = None):
    """A progress bar for one training run: steps done of the total, the latest training loss,
    images/s (with `batch_size`) and the time left, fed by the trial's `on_progress(phase, step,
    total, loss)` callback, which is what this yields; its `evaluated(step, total, val_loss)`
    prints an evaluation as a line above the bar (as a plain line when the bar is off).

    Rich redraws the bar 10 times a second, so the elapsed time runs between steps. The bar
    appears at the first event, so what is printed before the run starts (the data read) stays
    above it. Rich's speed leaves out the first advance it sees, so a resumed run's jump from 0
    to its step does not count as steps done in no time (nor throw the ETA)."""
    display = _TrainingDisplay(console, enabled, batch_size)
    try:
        yield display
    finally:
        display.stop()


class _ImagesPerSecond(ProgressColumn):
    """Training images per second: rich's steps/s estimate times the batch size."""

    def __init__(self, batch_size: int | None):
        super().__init__()
        self.batch_size = batch_size

    def render(self, task) -> Text:
        speed = task.speed if task.fields.get("phase") == "training" else None
        if speed is None or not self.batch_size:
            return Text("")
        return Text(f"{speed * self.batch_size:,.0f} img/s")


class _TrainingDisplay:
    def __init__(self, console: Console, enabled: bool, batch_size: int | None):
        self.console, self.enabled = console, enabled
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
            _ImagesPerSecond(batch_size), TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self.task = None

    def __call__(self, phase: str, step: int, total: int, loss: float | None = None) -> None:
        if not self.enabled:
            return
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("building", total=None, loss="", phase="")
        fields = {"description": phase, "total": total if phase == "training" else None, "phase": phase,
                  "loss": f"loss {loss:.4g}" if loss is not None else ""}
        self.progress.update(self.task, completed=step, **fields)

    def evaluated(self, step: int, total: int, val_loss: float, quality: dict[str, float] | None = None) -> None:
        """One line above the bar: the step, its validation loss and the sample quality measured there."""
        measured = "".join(f"  {name} {format_metric(name, value)}" for name, value in (quality or {}).items())
        self.console.print(f"step {step:>{len(str(total))}}/{total}  val_loss {val_loss:.4g}{measured}", highlight=False)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()

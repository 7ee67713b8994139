"""Rich renderings shared by the commands: a trial's metrics, a progress bar for training."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["metrics_table", "training_progress", "format_metric"]

_UNITS = {
    "val_loss": "ε-MSE on the fixed validation set",
    "train_throughput": "images/s, forward+backward+AdamW (median)",
    "train_throughput_iqr": "images/s, interquartile range",
    "infer_throughput": "images/s, forward only",
    "latency_ms": "ms, batch of 1",
    "params": "parameters",
    "flops": "forward FLOPs per image",
    "peak_mem_mb": "MiB",
    "duration_s": "s, whole trial",
    "train_seconds": "s, training steps only",
}


def format_metric(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if key in ("params", "flops", "steps") and isinstance(value, (int, float)):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "  ".join(f"{v:.4g}" for v in value)
    return str(value)


def metrics_table(metrics: dict[str, Any], title: str = "trial") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit / note", style="dim")
    for key in ("outcome", "val_loss", "val_loss_buckets", "train_throughput", "train_throughput_iqr", "infer_throughput",
                "latency_ms", "params", "flops", "peak_mem_mb", "steps", "train_seconds", "duration_s", "device",
                "precision", "threads"):
        if key in metrics:
            note = _UNITS.get(key, "")
            if key == "val_loss_buckets":
                note = "per noise bucket, low → high noise"
            if key == "peak_mem_mb" and metrics.get("peak_mem_source") == "cpu_proxy":
                note = "MiB, CPU proxy: weights+grads+AdamW+saved activations"
            table.add_row(key, format_metric(key, metrics[key]), note)
    curve = metrics.get("learning_curve") or []
    if curve:
        table.add_row("learning_curve", " ".join(f"{v:.3g}@{s}" for s, v in curve), "val_loss at step")
    return table


@contextmanager
def training_progress(console: Console, enabled: bool = True):
    """A progress bar fed by the trial's `on_progress(phase, step, total, loss)` callback; rich
    redraws it 10 times a second, so the elapsed time runs between steps."""
    if not enabled:
        yield lambda *event: None
        return
    progress = Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), console=console, transient=True,
    )
    with progress:
        task = progress.add_task("building", total=None, loss="")

        def update(phase: str, step: int, total: int, loss: float | None = None) -> None:
            progress.update(task, description=phase, completed=step, total=total if phase == "training" else None,
                            loss=f"loss {loss:.4g}" if loss is not None else "")

        yield update

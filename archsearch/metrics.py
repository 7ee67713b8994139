"""Every metric a trial records, named once: what it is, which way is better, how it reads.

    from archsearch.metrics import METRICS, OBJECTIVE_METRICS
    METRICS["train_throughput"].unit        # 'img/s'
    METRICS["val_loss"].direction           # 'minimize'

The other layers derive their lists from this one instead of keeping their own: `run_trial`
fills every entry (`METRIC_KEYS`), copying the `measured` ones from archsearch.measure's
`Measurement`; the search layer stores the `recorded` ones as a trial's user attributes; the
results table has columns for those with a `table` group, in the order declared here (the
order of the documented `trials.csv` contract), a bucket vector spread over `val_loss_t0...`;
objectives and constraints may name the `objective` ones; the terminal formats values and puts
units under column names from `format` and `unit`; the report's figures label axes with
`label`. A new metric is one entry here.

Torch-free and free of archsearch imports, so that the schema, the results table and the report
read it without loading anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["MetricInfo", "METRICS", "METRIC_NAMES", "OBJECTIVE_METRICS", "RECORDED_METRICS", "MEASURED_METRICS",
           "CONTEXT_METRICS",
           "table_metrics", "bucket_columns"]

# How a value is written: an integer count with thousands separators, a number to 4 significant
# digits, text, a list of numbers (one per noise bucket), a curve of (step, value) pairs, or a
# nested record of measurement details.
Format = Literal["count", "number", "text", "buckets", "curve", "record"]


@dataclass(frozen=True)
class MetricInfo:
    """One metric: its name, how it reads and where it goes."""

    name: str
    about: str                   # what it is and how it was measured, in a few words (a table's note)
    unit: str = ""               # short, under a table's column header ("" for a count or text)
    label: str = ""              # a figure's axis label, unit included
    direction: Literal["minimize", "maximize"] | None = None  # which way is better (None: not a quantity)
    format: Format = "number"
    objective: bool = False      # may be an objective or a constraint of a study
    table: Literal["metrics", "details"] | None = "metrics"  # its trials.csv group; None: not in the table
    recorded: bool = True        # stored as a user attribute of the study's trial (and in metrics.json)
    measured: bool = False       # taken from archsearch.measure's Measurement field of the same name
    shown: bool = True           # printed by `archsearch train`
    context: bool = False        # the machine and software a trial ran on (the report's protocol section)
    spread: str | None = None    # the metric that tells how much this one varied while it was timed
    columns: str = ""            # a bucket vector's column names in the table, `{i}` the bucket

    def column_names(self, value) -> list[str]:
        """The results-table columns this metric fills with `value`."""
        if self.table is None:
            return []
        if self.format == "buckets":
            return [self.columns.format(i=i) for i in range(len(value or []))]
        return [self.name]


def _metrics(*infos: MetricInfo) -> dict[str, MetricInfo]:
    return {info.name: info for info in infos}


# In trials.csv order: the "metrics" group follows the objectives, the "details" group follows
# the trial's identity (config_hash, fail_reason, ...); see archsearch.results.
METRICS: dict[str, MetricInfo] = _metrics(
    MetricInfo("params", "parameters", label="parameters", direction="minimize", format="count", objective=True),
    MetricInfo("flops", "forward FLOPs per image", "per img", "forward FLOPs per image", "minimize", "count",
               objective=True, measured=True),
    MetricInfo("train_throughput", "images/s, forward+backward+AdamW (median)", "img/s", "training throughput (images/s)",
               "maximize", objective=True, measured=True, spread="train_throughput_iqr"),
    MetricInfo("train_throughput_iqr", "images/s, interquartile range", "img/s",
               "training throughput spread (IQR, images/s)", "minimize", measured=True),
    MetricInfo("infer_throughput", "images/s, forward only", "img/s", "inference throughput (images/s)", "maximize",
               objective=True, measured=True),
    MetricInfo("latency_ms", "ms, batch of 1", "ms", "latency at batch 1 (ms)", "minimize", objective=True, measured=True),
    MetricInfo("peak_mem_mb", "MiB", "MiB", "peak memory (MiB)", "minimize", objective=True, measured=True),
    MetricInfo("val_loss", "ε-MSE on the fixed validation set", "MSE", "validation loss (ε-MSE, fixed noise)",
               "minimize", objective=True),
    MetricInfo("val_loss_buckets", "per noise bucket, low → high noise", "MSE",
               "validation loss per noise bucket (ε-MSE)", "minimize", "buckets", columns="val_loss_t{i}"),
    MetricInfo("train_loss", "mean training loss of the last logged window", "MSE", "training loss (ε-MSE)",
               "minimize", objective=True),
    MetricInfo("duration_s", "s, whole trial", "s", "trial duration (s)", "minimize", objective=True),
    MetricInfo("outcome", "how the trial ended: completed, pruned, diverged, oom, ...", format="text", table="details"),
    MetricInfo("device", "where it was trained and timed", format="text", table="details", context=True),
    MetricInfo("precision", "numeric precision of training and timing", format="text", table="details", context=True, measured=True),
    MetricInfo("threads", "torch intra-op threads while timing", format="count", table="details", context=True, measured=True),
    MetricInfo("torch", "torch version", format="text", table="details", context=True),
    MetricInfo("steps", "training steps taken", format="count", table="details"),
    MetricInfo("train_seconds", "s, training steps only", "s", "training time (s)", "minimize", table="details"),
    MetricInfo("peak_mem_source", "how peak_mem_mb was measured: cuda_allocator or cpu_proxy", format="text",
               table=None, measured=True, shown=False),
    MetricInfo("learning_curve", "val_loss at step", "MSE", "validation loss (ε-MSE, fixed noise)", "minimize",
               "curve", table=None),
    MetricInfo("train_loss_curve", "train_loss at step", "MSE", "training loss (ε-MSE)", "minimize", "curve",
               table=None, recorded=False, shown=False),
    MetricInfo("measure", "timing details: median step ms, timed steps, batch size, warm-up steps", format="record",
               table=None, recorded=False, shown=False),
)

METRIC_NAMES = tuple(METRICS)
OBJECTIVE_METRICS = tuple(name for name, info in METRICS.items() if info.objective)
RECORDED_METRICS = tuple(name for name, info in METRICS.items() if info.recorded)
MEASURED_METRICS = tuple(name for name, info in METRICS.items() if info.measured)
CONTEXT_METRICS = tuple(name for name, info in METRICS.items() if info.context)


def table_metrics(group: Literal["metrics", "details"]) -> list[MetricInfo]:
    """The metrics of one trials.csv group, in column order."""
    return [info for info in METRICS.values() if info.table == group]


def bucket_columns(columns: Iterable[str]) -> list[str]:
    """The bucket columns among `columns` (`val_loss_t0`, ...), by metric, then bucket."""
    found = []
    for info in METRICS.values():
        if info.format == "buckets":
            head, tail = info.columns.split("{i}")
            mine = [c for c in columns if c.startswith(head) and c.endswith(tail) and c[len(head):len(c) - len(tail)].isdigit()]
            found += sorted(mine, key=lambda c: int(c[len(head):len(c) - len(tail)]))
    return found

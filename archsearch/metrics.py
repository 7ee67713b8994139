"""Every metric a trial records, named once: what it is, which way is better, how it reads.

    from archsearch.metrics import METRICS, TrialMetrics
    METRICS["train_throughput"].unit        # 'img/s'
    METRICS["val_loss"].direction           # 'minimize'
    run_trial(...).metrics.val_loss         # a TrialMetrics: one typed field per metric

The registry is the fields of `TrialMetrics`, the record `run_trial` returns: each field
declares its metric (`metric(...)`), so a new metric is one field here. The other layers derive
their lists from it instead of keeping their own: `run_trial` copies the `measured` ones from
archsearch.measure's `Measurement`; the search layer stores the `recorded` ones as a trial's user
attributes (`to_dict()` gives their JSON keys); the results table has columns for those with a
`table` group, in the order declared here (the documented `trials.csv` order), a bucket vector
spread over `val_loss_t0...`; objectives and constraints may name the `objective` ones; the
terminal formats values and puts units under column names from `format` and `unit`; the
report's figures label axes with `label` and its protocol lists the `context` ones; early
stopping compares the `before_training` ones at a rung as they were measured. A renamed metric
keeps its old name as `formerly`, so that older trials still fill its column (`key_in`). The
`study_relative` ones depend on the study's other trials (the speed normalized by the study's
reference throughput, the under-load flag): the results table recomputes them over all of the
study's trials (archsearch.search.speed), and `needs_reference` ones need `measure.reference`.

Torch-free and free of archsearch imports, so that the schema, the results table and the report
read it without loading anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["MetricInfo", "TrialMetrics", "metric", "METRICS", "METRIC_NAMES", "OBJECTIVE_METRICS", "RECORDED_METRICS",
           "MEASURED_METRICS", "CONTEXT_METRICS", "TIMED_METRICS", "QUALITY_METRICS", "UNDER_LOAD_TOLERANCE", "table_metrics",
           "bucket_columns"]

# How a value is written: an integer count with thousands separators, a number to 4 significant
# digits, text, a yes/no flag, a list of numbers (one per noise bucket), a curve of (step, value)
# pairs, or a nested record of measurement details.
Format = Literal["count", "number", "text", "flag", "buckets", "curve", "record"]

# A trial whose reference network ran this much slower or faster than the study's median
# reference speed was timed on a busier (or quieter) machine than the study's other trials.
UNDER_LOAD_TOLERANCE = 0.25


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
    timed: bool = False          # a speed read off the clock, which a busy machine moves (archsearch verify re-measures it)
    columns: str = ""            # a bucket vector's column names in the table, `{i}` the bucket
    before_training: bool = False  # known once the model is built and timed, before it trains (what a rung compares as is)
    formerly: str | None = None  # the user attribute older trials recorded it under (read when this one is missing)
    needs_reference: bool = False  # timed against measure.reference (None without one)
    study_relative: bool = False   # depends on the study's other trials: the results table recomputes it over all of them
    quality: bool = False          # measured by the sample-quality phase (eval.quality); at an ASHA rung the rung's val_loss stands in

    def column_names(self, value) -> list[str]:
        """The results-table columns this metric fills with `value`."""
        if self.table is None:
            return []
        if self.format == "buckets":
            return [self.columns.format(i=i) for i in range(len(value or []))]
        return [self.name]

    def key_in(self, attrs: Mapping[str, Any]) -> str | None:
        """The user attribute of a trial that holds this metric: its name, or the name older
        trials recorded it under (`formerly`); None when the trial has neither."""
        if self.name in attrs:
            return self.name
        return self.formerly if self.formerly is not None and self.formerly in attrs else None


def metric(about: str, unit: str = "", label: str = "", direction: Literal["minimize", "maximize"] | None = None,
           format: Format = "number", **options: Any) -> Any:
    """A field of `TrialMetrics` (None until measured) that declares its metric."""
    return field(default=None, metadata={"metric": dict(about=about, unit=unit, label=label, direction=direction,
                                                        format=format, **options)})


@dataclass(slots=True)  # slots: a misspelled metric raises where it is set
class TrialMetrics:
    """What one trial measured: a field per metric, None where it was not measured; the fields are
    the registry, in trials.csv order (the "metrics" group follows the objectives, the "details"
    group the trial's identity: config_hash, fail_reason, ...; see archsearch.results)."""

    params: int | None = metric("parameters", label="parameters", direction="minimize", format="count",
                                objective=True, before_training=True)
    flops: int | None = metric("forward FLOPs per image", "per img", "forward FLOPs per image", "minimize", "count",
                               objective=True, measured=True, before_training=True)
    train_throughput: float | None = metric("images/s, forward+backward+AdamW (median)", "img/s",
                                            "training throughput (images/s)", "maximize", objective=True,
                                            measured=True, before_training=True, spread="train_throughput_iqr",
                                            timed=True)
    train_throughput_iqr: float | None = metric("images/s, interquartile range", "img/s",
                                                "training throughput spread (IQR, images/s)", "minimize", measured=True,
                                                before_training=True)
    train_throughput_normalized: float | None = metric(
        "images/s as at the study's usual machine load: train_speed_vs_ref × the study's reference images/s", "img/s",
        "training throughput, load-normalized (images/s)", "maximize", objective=True, before_training=True,
        needs_reference=True, study_relative=True, timed=True)
    train_speed_vs_ref: float | None = metric("median over interleaved step pairs of images/s ÷ the reference's", "×",
                                              "training speed relative to the reference network (×)", "maximize",
                                              objective=True, measured=True, before_training=True, needs_reference=True,
                                              timed=True)
    ref_throughput: float | None = metric("images/s of the reference network, timed interleaved with this one (median)",
                                          "img/s", "reference network's training throughput (images/s)", "maximize",
                                          measured=True, before_training=True, needs_reference=True)
    infer_throughput: float | None = metric("images/s, forward only", "img/s", "inference throughput (images/s)",
                                            "maximize", objective=True, measured=True, before_training=True, timed=True)
    latency_ms: float | None = metric("ms, batch of 1", "ms", "latency at batch 1 (ms)", "minimize", objective=True,
                                      measured=True, before_training=True, timed=True)
    peak_mem_mb: float | None = metric("MiB", "MiB", "peak memory (MiB)", "minimize", objective=True, measured=True,
                                       before_training=True)
    val_loss: float | None = metric("ε-MSE on the fixed validation set", "MSE", "validation loss (ε-MSE, fixed noise)",
                                    "minimize", objective=True)
    val_loss_buckets: list[float] | None = metric("per noise bucket, low → high noise", "MSE",
                                                  "validation loss per noise bucket (ε-MSE)", "minimize", "buckets",
                                                  columns="val_loss_t{i}")
    fd: float | None = metric("Fréchet distance of generated to real images in the feature network's space (FID with "
                              "Inception's features); eval.quality", "feat²", "Fréchet distance (FD)", "minimize",
                              objective=True, quality=True)
    kid: float | None = metric("kernel distance (unbiased MMD², cubic kernel) of generated to real features, mean over "
                               "subsets", "MMD²", "kernel distance (KID)", "minimize", objective=True, quality=True)
    sample_precision: float | None = metric("share of generated samples inside the real images' k-NN manifold "
                                            "(Kynkäänniemi et al. 2019): fidelity", "share", "precision (fidelity)",
                                            "maximize", objective=True, quality=True)
    sample_recall: float | None = metric("share of real images inside the generated samples' k-NN manifold: "
                                         "diversity", "share", "recall (diversity)", "maximize", objective=True, quality=True)
    fd_noise: float | None = metric("fd's sampling noise: its standard deviation over bootstrap resamplings of the "
                                    "generated samples (eval.quality.noise_rounds); fds closer than about 2.8 of it "
                                    "are a tie", "feat²", "FD sampling noise (sd)", "minimize", table="details")
    quality_seconds: float | None = metric("s, the sample-quality phase: sampling, features, distances", "s",
                                           "sample-quality time (s)", "minimize", objective=True)
    train_loss: float | None = metric("mean training loss of the last logged window", "MSE", "training loss (ε-MSE)",
                                      "minimize", objective=True)
    duration_s: float | None = metric("s, whole trial", "s", "trial duration (s)", "minimize", objective=True)
    outcome: str | None = metric("how the trial ended: completed, pruned, diverged, oom, ...", format="text",
                                 table="details")
    device: str | None = metric("where it was trained and timed", format="text", table="details", context=True)
    precision: str | None = metric("numeric precision of training and timing", format="text", table="details",
                                   context=True, measured=True)
    threads: int | None = metric("torch intra-op threads while timing (measure.threads: auto times no more than are "
                                 "free)", format="count", table="details", context=True, measured=True)
    train_threads: int | None = metric("torch intra-op threads while training (the process's, or its worker's share)",
                                       format="count", table="details", context=True)
    busy_cpus: float | None = metric("CPUs other processes kept busy just before timing (/proc/stat; none elsewhere)",
                                     "CPUs", "CPUs busy with other work before timing", "minimize", table="details",
                                     measured=True)
    cpu_count: int | None = metric("logical CPUs the process may use", format="count", table="details", context=True,
                                   measured=True)
    load_avg: float | None = metric("1-minute load average as timing ended (runnable threads, this trial's included)",
                                    "threads", "machine load average while timing (threads)", "minimize",
                                    table="details", measured=True)
    gpu_util: float | None = metric("GPU busy as timing started (NVML; none without CUDA or pynvml)", "%",
                                    "GPU utilization before timing (%)", "minimize", table="details", measured=True)
    sm_clock_mhz: float | None = metric("GPU SM clock as timing ended (NVML; none without CUDA or pynvml)", "MHz",
                                        "GPU SM clock while timing (MHz)", "maximize", table="details", measured=True)
    measured_under_load: bool | None = metric(f"the reference ran more than {UNDER_LOAD_TOLERANCE:.0%} off the study's "
                                              "median reference speed", format="flag", table="details", recorded=False, shown=False,
                                              needs_reference=True, study_relative=True)
    torch: str | None = metric("torch version", format="text", table="details", context=True)
    steps_trained: int | None = metric("training steps taken (fewer than train.steps when stopped early)", format="count",
                                       table="details", formerly="steps")
    train_seconds: float | None = metric("s, training steps only", "s", "training time (s)", "minimize", table="details")
    missing_files: str | None = metric("the files a completed run could not write, and why (`checkpoint not written: "
                                       "no space left on device under ...`); its values stand", format="text",
                                       table="details")
    peak_mem_source: str | None = metric("how peak_mem_mb was measured: cuda_allocator or cpu_proxy", format="text",
                                         table=None, measured=True, shown=False)
    learning_curve: list[list[float]] | None = metric("val_loss at step", "MSE", "validation loss (ε-MSE, fixed noise)",
                                                      "minimize", "curve", table=None)
    train_loss_curve: list[list[float]] | None = metric("train_loss at step", "MSE", "training loss (ε-MSE)", "minimize",
                                                        "curve", table=None, recorded=False, shown=False)
    quality: dict[str, Any] | None = metric("how sample quality was measured: features, samples, reference images, "
                                            "sampler, seed", format="record", table=None, shown=False)
    quality_curve: list[list[float]] | None = metric("fd at step (train --eval-every with --quality)", "feat²",
                                                     "Fréchet distance (FD)", "minimize", "curve", table=None)
    measure: dict[str, Any] | None = metric("timing details: median step ms, timed steps, batch size, warm-up steps, "
                                            "the reference's median step ms",
                                            format="record", table=None, recorded=False, shown=False)

    def to_dict(self) -> dict[str, Any]:
        """Every metric by name (what `archsearch train --out` writes and a trial records)."""
        return asdict(self)


METRICS: dict[str, MetricInfo] = {f.name: MetricInfo(f.name, **f.metadata["metric"]) for f in fields(TrialMetrics)}
METRIC_NAMES = tuple(METRICS)
OBJECTIVE_METRICS = tuple(name for name, info in METRICS.items() if info.objective)
RECORDED_METRICS = tuple(name for name, info in METRICS.items() if info.recorded)
MEASURED_METRICS = tuple(name for name, info in METRICS.items() if info.measured)
CONTEXT_METRICS = tuple(name for name, info in METRICS.items() if info.context)
TIMED_METRICS = tuple(name for name, info in METRICS.items() if info.timed)
QUALITY_METRICS = tuple(name for name, info in METRICS.items() if info.quality)


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

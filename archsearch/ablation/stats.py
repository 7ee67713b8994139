"""Each variant of an ablation against the base: paired differences, t-intervals, verdicts.

The base and every variant are trained with the same seeds (the same initial-weight seed,
batches and noise for seed s), so the comparison is paired. A relative change is computed on
the log scale: for seed s, r_s = log(variant_s / base_s); over n seeds the mean m of the r_s
gets a two-sided 95% Student-t interval, m ± t(0.975, n-1) · sd(r) / √n, and the change is
reported as exp(m) - 1 with the interval's ends mapped the same way, in percent. So a ratio
interval is never below -100% and halving and doubling are symmetric. Absolute differences
(variant_s - base_s) get the same t-interval directly. A verdict needs the whole interval on
one side of zero; with one seed there is no interval and no verdict.

The compared metrics are the ablation's objectives and, when it measured sample quality, the
quality metrics (archsearch.schema.ablation.compared_metrics); each one's registry `direction`
says which side of zero is better (`faster`/`slower` for a timed metric). A loss or a speed is
headlined in percent of the base; a quality metric in its own units, as papers compare FD in
points (and KID may be negative, precision and recall zero, where a ratio means nothing).

    runs = pd.DataFrame(rows of: variant, seed, state, val_loss, train_throughput, [fd, ...], params, flops, fail_reason)
    for c in compare_variants(runs, descriptions, seeds=3):
        print(c.variant, c.loss.format(), c.loss_verdict, c.changes["fd"].format() if "fd" in c.changes else "")

Pure numpy/pandas (scipy for the t quantile); no torch, no Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics import METRICS, QUALITY_METRICS
from ..schema.ablation import compared_metrics

__all__ = ["Interval", "Change", "Comparison", "paired_interval", "ratio_interval", "verdict", "loss_verdict",
           "throughput_verdict", "in_percent", "compare_variants", "CONFIDENCE", "NO_DIFFERENCE"]

CONFIDENCE = 0.95
NO_DIFFERENCE = "no detectable difference"


@dataclass(frozen=True)
class Interval:
    """A mean difference over `n` paired seeds and its confidence interval (None below 2 seeds)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def format(self, unit: str = "%", digits: int = 1) -> str:
        """`+3.1% [+1.2, +5.0]`, or `+3.1% [n/a]` without an interval."""
        if math.isnan(self.mean):
            return "n/a"
        head = f"{self.mean:+.{digits}f}{unit}"
        if not self.has_interval:
            return f"{head} [n/a]"
        return f"{head} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_interval(deltas: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of per-seed differences with a two-sided Student-t interval over the seeds."""
    from scipy.stats import t

    d = np.asarray([x for x in deltas if x is not None and math.isfinite(x)], dtype=float)
    n = len(d)
    if n == 0:
        return Interval(math.nan, None, None, 0)
    mean = float(d.mean())
    if n < 2:
        return Interval(mean, None, None, 1)
    half = float(t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The change in percent, 100·(exp(mean log ratio) - 1), with the t-interval of the log ratios
    mapped the same way (so it stays above -100%). Ratios that are not positive and finite are left out."""
    logs = [math.log(r) for r in ratios if r is not None and math.isfinite(r) and r > 0]
    iv = paired_interval(logs, confidence)
    percent = lambda x: None if x is None else 100.0 * math.expm1(x)  # noqa: E731
    return Interval(percent(iv.mean), percent(iv.low), percent(iv.high), iv.n)


def _verdict(interval: Interval | None, below: str, above: str) -> str:
    if interval is None or interval.n == 0:
        return "n/a"
    if not interval.has_interval:
        return "n/a (one seed)"
    if interval.high < 0:
        return below
    if interval.low > 0:
        return above
    return NO_DIFFERENCE


def verdict(metric: str, interval: Interval | None) -> str:
    """Whether a change of `metric` is better or worse (faster or slower for a timed one), by its
    registry direction, or no detectable difference."""
    info = METRICS[metric]
    good, bad = ("faster", "slower") if info.timed else ("better", "worse")
    below, above = (good, bad) if info.direction == "minimize" else (bad, good)
    return _verdict(interval, below, above)


def loss_verdict(interval: Interval | None) -> str:
    """better (the whole interval below zero), worse (above), or no detectable difference."""
    return verdict("val_loss", interval)


def throughput_verdict(interval: Interval | None) -> str:
    """faster (the whole interval above zero), slower (below), or no detectable difference."""
    return verdict("train_throughput", interval)


def in_percent(metric: str) -> bool:
    """Whether a change of `metric` is headlined in % of the base (a loss, a speed) rather than in
    its own units (a quality metric)."""
    return not METRICS[metric].quality


def _digits(interval: Interval) -> int:
    """Decimals that give the largest of mean and ends three significant digits."""
    ends = [abs(x) for x in (interval.mean, interval.low, interval.high) if x is not None and math.isfinite(x) and x]
    return 1 if not ends else max(0, min(6, 2 - math.floor(math.log10(max(ends)))))


@dataclass
class Change:
    """One metric of a variant against the base, paired by seed."""

    metric: str
    mean: float = math.nan  # mean over the variant's completed seeds
    relative: Interval | None = None  # Δ in % of the base (on the log scale); None where a value is not positive
    absolute: Interval | None = None  # Δ in the metric's units
    verdict: str = "n/a"

    @property
    def shown(self) -> Interval | None:
        """The change the table, the plot and the words headline (see `in_percent`)."""
        return self.relative if in_percent(self.metric) else self.absolute

    def format(self) -> str:
        """`+3.1% [+1.2, +5.0]` for a loss or a speed, `+4.21 [+1.05, +7.37]` for a quality metric."""
        interval = self.shown
        if interval is None:
            return "n/a"
        return interval.format() if in_percent(self.metric) else interval.format(unit="", digits=_digits(interval))


@dataclass
class Comparison:
    """One variant against the base (the base itself is a row with zero differences)."""

    variant: str
    description: str = ""
    seeds_done: int = 0  # seeds with a finished trial of this variant
    seeds_total: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # seed -> fail reason
    params: float = math.nan
    flops: float = math.nan
    changes: dict[str, Change] = field(default_factory=dict)  # by metric, in the order compared

    # The two every ablation compares, by the names they have always had here.
    val_loss = property(lambda self: self._change("val_loss").mean)
    train_throughput = property(lambda self: self._change("train_throughput").mean)
    loss = property(lambda self: self._change("val_loss").relative)  # Δ val loss, % of the base
    loss_abs = property(lambda self: self._change("val_loss").absolute)
    throughput = property(lambda self: self._change("train_throughput").relative)  # Δ train throughput, % of the base
    throughput_abs = property(lambda self: self._change("train_throughput").absolute)
    loss_verdict = property(lambda self: self._change("val_loss").verdict)
    throughput_verdict = property(lambda self: self._change("train_throughput").verdict)

    def _change(self, metric: str) -> Change:
        return self.changes.get(metric) or Change(metric)

    @property
    def status(self) -> str:
        """The seeds the numbers rest on: `3/3`, `2/3 (seed 1 diverged)`, `failed: oom`."""
        completed = self.seeds_done - len(self.failed)
        if self.failed and completed == 0:
            return "failed: " + ", ".join(sorted({r.split(":", 1)[0] for r in self.failed.values()}))
        text = f"{completed}/{self.seeds_total}"
        if self.failed:
            text += " (" + ", ".join(f"seed {s} {r.split(':', 1)[0]}" for s, r in sorted(self.failed.items())) + ")"
        return text

    def params_change(self, base: Comparison) -> float:
        return _percent(self.params, base.params)

    def flops_change(self, base: Comparison) -> float:
        return _percent(self.flops, base.flops)


def _percent(value: float, reference: float) -> float:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / reference


def compare_variants(runs: pd.DataFrame, descriptions: dict[str, str], seeds: int, base: str = "base",
                     metrics: Sequence[str] | None = None) -> list[Comparison]:
    """A Comparison for the base and every variant of `descriptions` (in its order).

    `runs` has one row per finished trial: variant, seed, state (COMPLETE or FAIL), a column per
    metric, params, flops, fail_reason. `metrics` are those compared (default: the ablation's
    objectives and the quality metrics `runs` holds values of). Seeds the base failed on pair
    with nothing.
    """
    if metrics is None:
        metrics = compared_metrics(m for m in QUALITY_METRICS if m in runs and runs[m].notna().any())
    out = []
    by_name = {name: runs[runs["variant"] == name] for name in descriptions} if len(runs) else {}
    base_rows = _completed(by_name.get(base), metrics)
    for name, description in descriptions.items():
        rows = by_name.get(name, pd.DataFrame())
        done = _completed(rows, metrics)
        comp = Comparison(name, description, seeds_done=len(rows), seeds_total=seeds)
        if len(rows):
            failed = rows[rows["state"] != "COMPLETE"]
            comp.failed = {int(r.seed): str(r.fail_reason or "failed") for r in failed.itertuples()}
            for metric in ("params", "flops"):
                values = pd.to_numeric(rows[metric], errors="coerce").dropna()
                setattr(comp, metric, float(values.iloc[0]) if len(values) else math.nan)
        paired = done.merge(base_rows, left_index=True, right_index=True, suffixes=("", "_base"))  # same seeds only
        for metric in metrics:
            mine, theirs = paired[metric], paired[f"{metric}_base"]
            change = Change(metric, float(done[metric].mean()) if done[metric].notna().any() else math.nan)
            change.absolute = paired_interval((mine - theirs).tolist())
            change.relative = ratio_interval((mine / theirs).tolist()) if _positive(mine, theirs) else None
            change.verdict = "reference" if name == base else verdict(metric, change.shown)
            comp.changes[metric] = change
        out.append(comp)
    return out


def _positive(*columns: pd.Series) -> bool:
    """Whether every measured value is above zero, so that their ratios mean something."""
    values = np.concatenate([c.to_numpy(dtype=float) for c in columns])
    return bool((values[np.isfinite(values)] > 0).all())


def _completed(rows: pd.DataFrame | None, metrics: Sequence[str]) -> pd.DataFrame:
    """Completed runs indexed by seed, with numeric metrics (NaN where a run did not measure one)."""
    if rows is None or not len(rows):
        return pd.DataFrame(columns=list(metrics), dtype=float)
    ok = rows[rows["state"] == "COMPLETE"]
    out = pd.DataFrame({m: pd.to_numeric(ok[m], errors="coerce") if m in ok else np.nan for m in metrics}, index=ok.index)
    out.index = ok["seed"].astype(int)
    return out[~out.index.duplicated()]

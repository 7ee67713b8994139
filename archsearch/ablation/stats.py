"""Each variant of an ablation against the base: paired differences, t-intervals, verdicts.

The base and every variant are trained with the same seeds (the same initial-weight seed,
batches and noise for seed s), so the comparison is paired. A relative change is computed on
the log scale: for seed s, r_s = log(variant_s / base_s); over n seeds the mean m of the r_s
gets a two-sided 95% Student-t interval, m ± t(0.975, n-1) · sd(r) / √n, and the change is
reported as exp(m) - 1 with the interval's ends mapped the same way, in percent. So a ratio
interval is never below -100% and halving and doubling are symmetric. Absolute differences
(variant_s - base_s) get the same t-interval directly. A verdict needs the whole interval on
one side of zero; with one seed there is no interval and no verdict.

    runs = pd.DataFrame(rows of: variant, seed, state, val_loss, train_throughput, params, flops, fail_reason)
    for c in compare_variants(runs, descriptions):
        print(c.variant, c.loss.format(), c.loss_verdict)

Pure numpy/pandas (scipy for the t quantile); no torch, no Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Interval", "Comparison", "paired_interval", "ratio_interval", "loss_verdict", "throughput_verdict", "compare_variants",
           "CONFIDENCE", "NO_DIFFERENCE"]

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


def loss_verdict(interval: Interval | None) -> str:
    """better (the whole interval below zero), worse (above), or no detectable difference."""
    return _verdict(interval, "better", "worse")


def throughput_verdict(interval: Interval | None) -> str:
    """faster (the whole interval above zero), slower (below), or no detectable difference."""
    return _verdict(interval, "slower", "faster")


@dataclass
class Comparison:
    """One variant against the base (the base itself is a row with zero differences)."""

    variant: str
    description: str = ""
    seeds_done: int = 0  # seeds with a finished trial of this variant
    seeds_total: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # seed -> fail reason
    val_loss: float = math.nan  # mean over completed seeds
    train_throughput: float = math.nan
    params: float = math.nan
    flops: float = math.nan
    loss: Interval | None = None  # Δ val loss, % of the base, paired by seed (on the log scale)
    loss_abs: Interval | None = None
    throughput: Interval | None = None  # Δ train throughput, % of the base
    throughput_abs: Interval | None = None
    loss_verdict: str = "n/a"
    throughput_verdict: str = "n/a"

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


def compare_variants(runs: pd.DataFrame, descriptions: dict[str, str], seeds: int, base: str = "base") -> list[Comparison]:
    """A Comparison for the base and every variant of `descriptions` (in its order).

    `runs` has one row per finished trial: variant, seed, state (COMPLETE or FAIL), val_loss,
    train_throughput, params, flops, fail_reason. Seeds the base failed on pair with nothing.
    """
    out = []
    by_name = {name: runs[runs["variant"] == name] for name in descriptions} if len(runs) else {}
    base_rows = _completed(by_name.get(base))
    for name, description in descriptions.items():
        rows = by_name.get(name, pd.DataFrame())
        done = _completed(rows)
        comp = Comparison(name, description, seeds_done=len(rows), seeds_total=seeds)
        if len(rows):
            failed = rows[rows["state"] != "COMPLETE"]
            comp.failed = {int(r.seed): str(r.fail_reason or "failed") for r in failed.itertuples()}
            for metric in ("params", "flops"):
                values = pd.to_numeric(rows[metric], errors="coerce").dropna()
                setattr(comp, metric, float(values.iloc[0]) if len(values) else math.nan)
        if len(done):
            comp.val_loss = float(done["val_loss"].mean())
            comp.train_throughput = float(done["train_throughput"].mean())
        paired = done.merge(base_rows, left_index=True, right_index=True, suffixes=("", "_base"))  # same seeds only
        for metric, rel, absolute in (("val_loss", "loss", "loss_abs"), ("train_throughput", "throughput", "throughput_abs")):
            diff = paired[metric] - paired[f"{metric}_base"]
            setattr(comp, absolute, paired_interval(diff.tolist()))
            setattr(comp, rel, ratio_interval((paired[metric] / paired[f"{metric}_base"]).tolist()))
        if name == base:
            comp.loss_verdict = comp.throughput_verdict = "reference"
        else:
            comp.loss_verdict = loss_verdict(comp.loss)
            comp.throughput_verdict = throughput_verdict(comp.throughput)
        out.append(comp)
    return out


def _completed(rows: pd.DataFrame | None) -> pd.DataFrame:
    """Completed runs indexed by seed, with numeric metrics."""
    if rows is None or not len(rows):
        return pd.DataFrame(columns=["val_loss", "train_throughput"], dtype=float)
    ok = rows[rows["state"] == "COMPLETE"]
    out = pd.DataFrame({m: pd.to_numeric(ok[m], errors="coerce") for m in ("val_loss", "train_throughput")})
    out.index = ok["seed"].astype(int)
    return out[~out.index.duplicated()]

"""Does a short-budget ranking predict the long-budget one? Rank correlations with bootstrap
intervals, and how much of a Pareto front survives. Pure numpy: no torch, no scipy, no Optuna.

    tau = agreement("τ", kendall_tau, short_losses, long_losses)    # Agreement: value, [low, high], n
    tau.format()                                                     # 'τ = 0.8 [0.6, 0.93]'
    recall, precision = front_agreement({1, 3, 5}, {1, 5, 8})        # 2/3, 2/3

- **Kendall's τ-b** (`kendall_tau`): (C − D) / √((n0 − n1)(n0 − n2)) over the n0 = n(n−1)/2 pairs,
  C concordant, D discordant, n1 and n2 the pairs tied in x and in y (a pair tied in either
  counts as neither concordant nor discordant). scipy.stats.kendalltau's default.
- **Spearman's ρ** (`spearman_rho`): the Pearson correlation of the ranks, ties sharing the mean
  of their ranks. scipy.stats.spearmanr.
- **Bootstrap 95% interval** (`bootstrap_interval`): the pairs (x_i, y_i) are resampled with
  replacement `RESAMPLES` = 2000 times from a generator seeded with `SEED` = 0 (so a rerun gives
  the same interval), the statistic is computed on each resample, and the interval is the 2.5th
  and 97.5th percentiles of those values (numpy's linear interpolation). A resample on which the
  statistic is undefined (all its x or all its y equal) is left out. Below `MIN_PAIRS` = 3 pairs
  there is no interval.
- **Front recall and precision** (`front_agreement`): of the short-budget front, the fraction that
  is on the long-budget front (recall); of the long-budget front, the fraction that was on the
  short-budget one (precision).
Either statistic is NaN when it is undefined: fewer than two pairs, or a constant x or y.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

__all__ = ["Agreement", "kendall_tau", "spearman_rho", "average_ranks", "bootstrap_values", "bootstrap_interval",
           "agreement", "front_agreement", "RESAMPLES", "SEED", "CONFIDENCE", "MIN_PAIRS"]

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
MIN_PAIRS = 3


def kendall_tau(x, y) -> float:
    """Kendall's τ-b of paired values (see the module docstring)."""
    x, y = _pairs(x, y)
    if len(x) < 2:
        return math.nan
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    tied_x, tied_y = int((dx == 0).sum()), int((dy == 0).sum())
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    if denominator == 0:
        return math.nan
    return float((dx * dy).sum() / denominator)


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman_rho(x, y) -> float:
    """Spearman's ρ of paired values (see the module docstring)."""
    x, y = _pairs(x, y)
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x) - (len(x) + 1) / 2, average_ranks(y) - (len(y) + 1) / 2
    denominator = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    if denominator == 0:
        return math.nan
    return float((rx * ry).sum() / denominator)


def bootstrap_values(x, y, statistic: Callable[[np.ndarray, np.ndarray], float], resamples: int = RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """`statistic` on each of `resamples` resamples of the pairs (drawn with replacement from a
    generator seeded with `seed`), those on which it is undefined left out."""
    x, y = _pairs(x, y)
    if not len(x):
        return np.array([])
    picks = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    values = np.array([statistic(x[rows], y[rows]) for rows in picks])
    return values[np.isfinite(values)]


def bootstrap_interval(x, y, statistic: Callable[[np.ndarray, np.ndarray], float], resamples: int = RESAMPLES,
                       seed: int = SEED, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The percentile bootstrap interval of `statistic(x, y)` over resampled pairs; None below
    MIN_PAIRS pairs or when no resample defines the statistic."""
    if len(_pairs(x, y)[0]) < MIN_PAIRS:
        return None
    values = bootstrap_values(x, y, statistic, resamples, seed)
    if not len(values):
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Agreement:
    """A rank correlation over `n` pairs and its bootstrap interval (None without one)."""

    symbol: str        # τ or ρ
    value: float
    interval: tuple[float, float] | None
    n: int

    def format(self) -> str:
        """`τ = 0.8 [0.6, 0.93]`, `τ = 1 [no interval: 2 pairs]`, or `τ undefined (...)`."""
        if not math.isfinite(self.value):
            return f"{self.symbol} undefined ({self.n} pairs)"
        head = f"{self.symbol} = {self.value:.2g}"
        if self.interval is None:
            return f"{head} [no interval: {self.n} pairs]"
        return f"{head} [{self.interval[0]:.2g}, {self.interval[1]:.2g}]"


def agreement(symbol: str, statistic: Callable, x, y, resamples: int = RESAMPLES, seed: int = SEED) -> Agreement:
    """`statistic` of the pairs (x_i, y_i) with its bootstrap interval."""
    x, y = _pairs(x, y)
    return Agreement(symbol, statistic(x, y), bootstrap_interval(x, y, statistic, resamples, seed), len(x))


def front_agreement(short_front: Collection, long_front: Collection) -> tuple[float, float]:
    """(recall, precision) of the short-budget front against the long-budget one; NaN for an
    empty side."""
    kept = len(set(short_front) & set(long_front))
    recall = kept / len(set(short_front)) if short_front else math.nan
    precision = kept / len(set(long_front)) if long_front else math.nan
    return recall, precision


def _pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The pairs in which both values are finite, as float arrays."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"{len(x)} values against {len(y)}: the values must be paired")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]

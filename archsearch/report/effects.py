"""Marginal effects of the searched fields: for each value of a field, the median of each
metric over the trials that used it, with a bootstrap 95% confidence interval.

    effects = marginal_effects(completed, ["architecture.skip.combine"], ["val_loss", "train_throughput"])
    #   field                      value  n  val_loss  val_loss_lo  val_loss_hi  train_throughput ...
    #   architecture.skip.combine  add    5  0.171     0.165        0.180        560.2

A numeric field with more than `max_values` distinct values (a searched learning rate) is
grouped into quartile bins, labelled `[low, high]`.

A marginal effect averages over everything else the search varied, so it is a hint of what a
choice does, not a controlled ablation (`archsearch ablate` is). The interval is the percentile
bootstrap of the median: resample the group with replacement `resamples` times, take the
2.5th and 97.5th percentiles of the resampled medians. Pure numpy/pandas, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..results import setting_columns

__all__ = ["bootstrap_median_ci", "marginal_effects", "varying_columns", "value_label", "MISSING"]

# The label of trials in which a field does not exist (a level beyond a sampled depth).
MISSING = "–"


def bootstrap_median_ci(
    sample: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(median, low, high) of `sample` (NaNs dropped); a NaN triple for an empty sample."""
    x = np.asarray(sample, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)  # (resamples,)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(np.median(x)), float(low), float(high)


def value_label(value) -> str:
    """A field value as the report shows it: 32.0 -> '32', NaN -> MISSING, True -> 'true'."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def varying_columns(df: pd.DataFrame) -> list[str]:
    """The config and training columns (archsearch.results.setting_columns) that take more than
    one value (a missing value counts)."""
    return [c for c in setting_columns(df.columns) if df[c].map(value_label).nunique() > 1]


def marginal_effects(
    df: pd.DataFrame, fields: Sequence[str], metrics: Sequence[str], resamples: int = 2000, seed: int = 0,
    max_values: int = 6,
) -> pd.DataFrame:
    """One row per (field, value): `n`, and `<metric>`, `<metric>_lo`, `<metric>_hi` per metric.

    `df` holds the trials to summarize (completed ones). Values are grouped by their label
    (`value_label`), so 32 and 32.0 are one group and missing fields form the group MISSING.
    Rows keep the fields' order; within a field, values are sorted (numbers numerically).
    """
    rows = []
    for field in fields:
        if field not in df.columns:
            continue
        labels = df[field].map(value_label)
        if labels.nunique() > max_values and pd.api.types.is_numeric_dtype(df[field]):
            labels = _quartile_labels(df[field])
        for label in _sorted_labels(labels.unique()):
            group = df[labels == label]
            row = {"field": field, "value": label, "n": len(group)}
            for metric in metrics:
                sample = group[metric].to_numpy(dtype=float) if metric in group.columns else np.array([])
                row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = bootstrap_median_ci(
                    sample, resamples=resamples, seed=seed)
            rows.append(row)
    columns = ["field", "value", "n"] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")]
    return pd.DataFrame(rows, columns=columns)


def _quartile_labels(values: pd.Series) -> pd.Series:
    codes = pd.qcut(values, 4, labels=False, duplicates="drop")
    spans = values.groupby(codes).agg(["min", "max"])
    names = {code: f"[{value_label(row['min'])}, {value_label(row['max'])}]" for code, row in spans.iterrows()}
    return codes.map(names).where(values.notna(), MISSING).astype(object)


def _sorted_labels(labels) -> list[str]:
    def key(label: str):
        try:
            return (0, float(label.split(",")[0].lstrip("[")), label)
        except ValueError:
            return (1 if label != MISSING else 2, 0.0, label)

    return sorted(labels, key=key)

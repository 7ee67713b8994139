"""A speed that survives load: a trial's throughput normalized by its study's reference speed,
and the trials that were timed on a busier (or quieter) machine than the study's others.

    run_trial(..., speed_anchor=SpeedAnchor(trial.study, train_cfg.batch_size))   # at record time
    df = speed_columns(df)                                                        # in the results table

Every trial's training step is timed in turns with the study's reference network
(archsearch.timing): `train_speed_vs_ref`, the candidate's images/s ÷ the reference's, cancels
the load both steps saw. To read as images/s again, `train_throughput_normalized` multiplies it
by one reference speed for the study:

- **When a trial is recorded** (the value Optuna stores when it is an objective, and what early
  stopping's rungs compare): the study's **anchor**, the reference images/s of the first trial
  that measured one, kept as the study user attribute `reference_throughput`. It never changes,
  so every trial's stored value is its ratio times the same number: the sampler, the rungs and
  Optuna's best trials rank trials exactly by their ratio, in whatever order they finish.
- **In the results table** (`speed_columns`): the **median** reference images/s over all of the
  study's trials, a better estimate of the machine's usual speed than one trial's. The column is
  thus the stored value × (median ÷ anchor): one factor for every trial of a group, so the
  table's front and rankings are Optuna's and only the scale differs, by how far the first
  trial's reference was from the median (a few percent on a quiet machine; the report's
  protocol section states both numbers).

Why not the running median at record time: it moves as trials come in, so trials told early
and late would be scaled by different numbers, and Optuna's front could differ from the
table's. Why not a reference timed once when the study is created: that needs the batch size
and precision of trials that do not exist yet (both may be searched), and one more timing.

Anchors and medians are per **group**, (`train.batch_size`, `precision`): a reference's
images/s depends on both, and a study may search both. Machines are not grouped: two machines
sharing a study are each timed against the same reference, so their normalized values compare
(as on the study's usual machine), where raw throughputs do not.

A trial whose reference ran more than `UNDER_LOAD_TOLERANCE` (25%) off its group's median is
`measured_under_load` (a table column; the report lists them): its raw throughput is the load's
as much as its own. Reused duplicates do not count towards a median (they repeat their
original's). Two trials that record a study's first reference at the same moment may both
write the anchor; each reads it back after writing, so they normally agree on the last one.

Torch-free: the results table uses it.
"""

from __future__ import annotations

import math
from typing import Any

from ..metrics import UNDER_LOAD_TOLERANCE
from ..schema.paths import TRAIN, qualified
from .storage import is_transient

__all__ = ["REFERENCE_ATTR", "SpeedAnchor", "speed_group", "speed_columns", "study_reference_speeds"]

REFERENCE_ATTR = "reference_throughput"  # study user attribute: {group: reference images/s}
_BATCH = qualified(TRAIN, "batch_size")


def speed_group(batch_size: Any, precision: Any) -> str:
    """The key of a group of trials whose reference speeds compare: `batch 32, fp32`."""
    return f"batch {batch_size}, {precision}"


class SpeedAnchor:
    """`run_trial`'s `speed_anchor` in a study: the anchor of the trial's group, written first
    by the trial that finds none (see the module docstring). None (the trial's own reference
    speed) when the storage is down."""

    def __init__(self, study, batch_size: int):
        self.study, self.batch_size = study, batch_size

    def __call__(self, metrics) -> float | None:
        if metrics.ref_throughput is None:
            return None
        group = speed_group(self.batch_size, metrics.precision)
        try:
            anchors = self.study.user_attrs.get(REFERENCE_ATTR) or {}
            if group not in anchors:
                self.study.set_user_attr(REFERENCE_ATTR, {**anchors, group: metrics.ref_throughput})
                anchors = self.study.user_attrs.get(REFERENCE_ATTR) or {}  # a trial writing at once may have won
        except Exception as exc:  # a storage that is down: the trial's own speed, rather than no trial
            if not is_transient(exc):
                raise
            return None
        value = anchors.get(group)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def _groups(df):
    """Each row's group key, from the table's `train.batch_size` and `precision` columns."""
    import pandas as pd

    def column(name):
        return df[name] if name in df.columns else pd.Series("?", index=df.index)

    pairs = zip(column(_BATCH).tolist(), column("precision").tolist())  # a list, not a Series lookup per row
    return pd.Series([speed_group(b, p) for b, p in pairs], index=df.index, dtype=object)


def _numeric(df, column: str):
    import pandas as pd

    if column not in df.columns:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def study_reference_speeds(df) -> dict[str, float]:
    """{group: median reference images/s} over a results table's trials that measured one."""
    if df.empty:
        return {}
    ref = _numeric(df, "ref_throughput")
    counted = ref.notna() & ref.gt(0)
    if "reused_from" in df.columns:
        counted &= df["reused_from"].isna()
    return {str(k): float(v) for k, v in ref[counted].groupby(_groups(df)[counted]).median().items()}


def speed_columns(df, medians: dict[str, float] | None = None):
    """The results table with `train_throughput_normalized` (ratio × the group's median
    reference speed) and `measured_under_load` recomputed over all of its trials; None where a
    trial has no reference timing (a study started before references, or `reference: null`).
    `medians` (`study_reference_speeds` of another study's table) puts the trials on that
    study's scale instead: a search's baselines beside its trials."""
    if df.empty:
        return df
    df = df.copy()
    medians = study_reference_speeds(df) if medians is None else medians
    typical = _groups(df).map(lambda g: medians.get(g, math.nan)).astype(float)
    df["train_throughput_normalized"] = _numeric(df, "train_speed_vs_ref") * typical
    off = (_numeric(df, "ref_throughput") / typical - 1).abs()
    df["measured_under_load"] = (off > UNDER_LOAD_TOLERANCE).astype(object).where(off.notna(), None)
    return df

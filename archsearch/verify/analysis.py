"""What a verify study says about its source study: rank agreement, the front's survival, speed ties.

    found = find_verify_study("results/quickstart")                  # the linked study, or None
    v = verification_of(source_df, objectives, directions, found)     # a Verification
    v.verdict    # 'the 60-step ranking held at 600 steps (τ = 0.8 [0.6, 0.93]); 4 of 5 front members ...'

The verify study (`<name>-verify`, in the source's storage; archsearch.verify.runner) lists the
retrains of its last run in its user attribute `items`; each is matched to its trials by config
and settings hash, its first completed trial counting (else its last failure). Per retrained
source trial:
- the short-budget loss is the source trial's `val_loss`, the long-budget loss its long retrain's,
  the seed loss its retrain at the original budget with the next seed (`--seeds 2`);
- it is on the **long-budget front** when it is non-dominated among the retrained trials with a
  long-budget loss, under the study's objectives and directions, `val_loss` replaced by the
  long-budget loss and every other objective the source trial's own value (only the training
  budget changes). Recall and precision compare that front with the source front's members.
Every other objective measured by the retrain itself (a sample-quality metric, `fd` in a study
searched on it) is replaced by its long-budget value too.
Rank correlations: archsearch.verify.stats. Verdict words, from Kendall's τ (of the loss, and
with sample quality, of the short-run objective against the long-budget FD): ≥ 0.8 "held",
≥ 0.5 "mostly held", > 0 "held only weakly", otherwise "did not hold"; an interval reaching 0
or below, with τ > 0, adds that there are too few trials to tell.

Sample quality (`archsearch verify --quality`, or a study searched on a quality metric: its
retrains measure `eval.quality` at the long budget; `quality_agreement`), once a retrain has a
long-budget `fd`:
- the **search's short-run objective** (`fd` when the study searched on it, else `val_loss`)
  against the long-budget FD, Kendall's τ and Spearman's ρ with their intervals: does what the
  search ranked by predict the sample quality of the longer run?
- the long-budget loss against the long-budget FD: does the loss rank sample quality at all?
- the **front in quality**: the long-budget front computed with `val_loss` replaced by the
  long-budget `fd` (minimized; the other objectives as for the long-budget front), and the
  recall and precision of the source front against it.

Speed ties, from the `remeasure` record (archsearch.verify.remeasure): for every re-measured
objective m and every two front members a, b where a is at least as good as b in every other
objective, b is on the front only by its edge in m. When the re-measured ranges (min to max over
the rounds) of a and b overlap, that edge is within the measured spread: "tied within noise";
when a's whole range is better than b's, a dominates b as re-measured: "reversed"; otherwise
b's edge "holds".
No torch; numpy and pandas only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigErrors
from ..metrics import QUALITY_METRICS
from ..pareto import pareto_mask
from ..results import VERIFY_SUFFIX, trials_dataframe
from ..search.engine import PASSED_OVER
from .selection import FRONT, LONG, SEED
from .stats import MIN_PAIRS, Agreement, agreement, average_ranks, front_agreement, kendall_tau, spearman_rho

__all__ = ["Verification", "QualityAgreement", "verification_of", "quality_agreement", "short_objective", "verdict",
           "find_verify_study", "verify_name", "VERIFY_SUFFIX", "TIED", "REVERSED", "HOLDS", "QUALITY"]

TIED, REVERSED, HOLDS = "tied within noise", "reversed", "holds"
QUALITY = "fd"  # the sample-quality metric the ranking is checked against
QUALITY_COLUMN = f"long {QUALITY}"
_LONG_RUN = ("val_loss", *QUALITY_METRICS)  # what a retrain measures anew: its long-budget value replaces the source's


def verify_name(name: str) -> str:
    """The verify study of the study `name`."""
    return f"{name}{VERIFY_SUFFIX}"


def find_verify_study(study_dir: str | Path | None = None, storage: str | None = None, name: str | None = None):
    """The verify study linked to a study (its folder's journal, or `storage`), or None."""
    from ..results import open_study

    name = name or (Path(study_dir).name if study_dir else None)
    if not name or name.endswith(VERIFY_SUFFIX):
        return None
    try:
        return open_study(study_dir, storage, verify_name(name))
    except ConfigErrors:
        return None


@dataclass
class QualityAgreement:
    """How the search's short-run objective ranks long-budget sample quality (see the module docstring)."""

    short: str                        # the short-run objective: fd when the study searched on it, else val_loss
    tau: Agreement                    # short-run objective vs long-budget fd
    rho: Agreement
    loss_tau: Agreement               # long-budget val_loss vs long-budget fd
    loss_rho: Agreement
    recall: float                     # of the front against the long-budget front in quality
    precision: float
    kept: int                         # front members on the long-budget front in quality
    front_size: int                   # front members with a long-budget fd
    long_front: list[int]             # source trial numbers on the long-budget front in quality
    objectives: list[str]             # that front's objectives (val_loss replaced by fd)


@dataclass
class Verification:
    source: str                       # the source study's name
    name: str                         # the verify study's
    objectives: list[str]
    directions: list[str]
    table: pd.DataFrame               # one row per retrained source trial (see `_table`)
    tau: Agreement                    # short- vs long-budget val_loss
    rho: Agreement
    seed_tau: Agreement | None        # original vs next seed at the original budget (--seeds 2)
    seed_rho: Agreement | None
    recall: float
    precision: float
    kept: int                         # front members on the long-budget front
    front_size: int                   # front members with a long-budget loss
    long_front: list[int]             # source trial numbers on the long-budget front
    short_steps: list[int]
    long_steps: list[int]
    pending: int                      # retrains without a finished trial
    speed: pd.DataFrame = field(default_factory=pd.DataFrame)  # trial, metric, median, low, high, rounds, study
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # better_in_rest, edge_in_metric, metric, verdict
    remeasure: dict[str, Any] | None = None
    quality: QualityAgreement | None = None  # once a retrain has a long-budget fd (--quality)
    verdict: str = ""


def verification_of(source: pd.DataFrame, objectives: list[str], directions: list[str], study) -> Verification:
    """Compare a source study's results table with its verify study (see the module docstring)."""
    items = study.user_attrs.get("items") or []
    runs = _runs(trials_dataframe(study.get_trials(deepcopy=False), objectives), items)
    table = _table(source, runs, items, objectives, directions)
    quality_front = _quality_objectives(objectives, directions)
    both = table.dropna(subset=["short val_loss", "long val_loss"])
    seeded = table.dropna(subset=["short val_loss", "seed val_loss"])
    has_seed = any(item["budget"] == SEED for item in items)
    front = both[both["role"] == FRONT]["trial"].tolist()
    long_front = both[both["on long front"] == True]["trial"].tolist()  # noqa: E712 - a column of True/False/None
    recall, precision = front_agreement(front, long_front)
    remeasure = study.user_attrs.get("remeasure")
    speed = _speed(remeasure, source)
    v = Verification(
        source=str(study.user_attrs.get("verify_of", study.study_name.removesuffix(VERIFY_SUFFIX))),
        name=study.study_name, objectives=objectives, directions=directions, table=table,
        tau=agreement("τ", kendall_tau, both["short val_loss"], both["long val_loss"]),
        rho=agreement("ρ", spearman_rho, both["short val_loss"], both["long val_loss"]),
        seed_tau=agreement("τ", kendall_tau, seeded["short val_loss"], seeded["seed val_loss"]) if has_seed else None,
        seed_rho=agreement("ρ", spearman_rho, seeded["short val_loss"], seeded["seed val_loss"]) if has_seed else None,
        recall=recall, precision=precision, kept=len(set(front) & set(long_front)), front_size=len(front),
        long_front=long_front, short_steps=_unique(both["short steps"]), long_steps=_unique(both["long steps"]),
        pending=sum(1 for item in items if _key(item) not in runs), speed=speed,
        pairs=_pairs(source, table, speed, objectives, directions), remeasure=remeasure,
        quality=quality_agreement(table, short_objective(objectives), quality_front[0]))
    v.verdict = verdict(v)
    return v


def short_objective(objectives: list[str]) -> str:
    """What the search ranked sample quality by: its FD when it searched on FD, else its loss."""
    return QUALITY if QUALITY in objectives else "val_loss"


def quality_agreement(table: pd.DataFrame, short: str, objectives: list[str] = ()) -> QualityAgreement | None:
    """The sample-quality figures of a verify table (columns `short <short>`, `long val_loss`,
    `long fd`, `role`, `on long quality front`, `trial`); None when no retrain has a long-budget fd.
    `objectives` names the quality front's objectives, for the record."""
    if QUALITY_COLUMN not in table.columns or table[QUALITY_COLUMN].isna().all():
        return None
    ranked = table.dropna(subset=[f"short {short}", QUALITY_COLUMN])
    scored = table.dropna(subset=["long val_loss", QUALITY_COLUMN])
    measured = table[table[QUALITY_COLUMN].notna()]
    front = measured[measured["role"] == FRONT]["trial"].tolist()
    long_front = measured[measured["on long quality front"] == True]["trial"].tolist()  # noqa: E712
    recall, precision = front_agreement(front, long_front)
    return QualityAgreement(
        short=short,
        tau=agreement("τ", kendall_tau, ranked[f"short {short}"], ranked[QUALITY_COLUMN]),
        rho=agreement("ρ", spearman_rho, ranked[f"short {short}"], ranked[QUALITY_COLUMN]),
        loss_tau=agreement("τ", kendall_tau, scored["long val_loss"], scored[QUALITY_COLUMN]),
        loss_rho=agreement("ρ", spearman_rho, scored["long val_loss"], scored[QUALITY_COLUMN]),
        recall=recall, precision=precision, kept=len(set(front) & set(long_front)), front_size=len(front),
        long_front=long_front, objectives=list(objectives))


def _quality_objectives(objectives: list[str], directions: list[str]) -> tuple[list[str], list[str]]:
    """The front in quality's objectives: the study's, val_loss replaced by fd (minimized)."""
    out = dict(zip(objectives, directions))
    if "val_loss" in out:
        out = {(QUALITY if o == "val_loss" else o): ("minimize" if o == "val_loss" else d) for o, d in out.items()
               if not (o == QUALITY and "val_loss" in out)}
    return list(out), list(out.values())


def _key(item: dict) -> tuple[int, str]:
    return int(item["source_trial"]), str(item["budget"])


def _runs(df: pd.DataFrame, items: list[dict]) -> dict[tuple[int, str], pd.Series]:
    """(source trial, budget) -> its finished verify trial: the first completed one, else the last
    failure of its own (not an interrupted one, nor one lost with its worker)."""
    out: dict[tuple[int, str], pd.Series] = {}
    if df.empty:
        return out
    outcome = df["outcome"] if "outcome" in df.columns else pd.Series(None, index=df.index)
    done = df[(df["state"] == "COMPLETE") | ((df["state"] == "FAIL") & ~outcome.isin(PASSED_OVER))]
    for item in items:
        rows = done[(done["config_hash"] == item["config_hash"]) & (done["settings_hash"] == item["settings_hash"])]
        complete = rows[rows["state"] == "COMPLETE"]
        if len(complete):
            out[_key(item)] = complete.sort_values("number").iloc[0]
        elif len(rows):
            out[_key(item)] = rows.sort_values("number").iloc[-1]
    return out


def _table(source: pd.DataFrame, runs: dict, items: list[dict], objectives: list[str], directions: list[str]) -> pd.DataFrame:
    """trial, role, short/long/seed val_loss, the short and long sample-quality metrics, steps,
    ranks, whether it is on the long-budget front (and on the one in quality), and what became of
    each retrain (its state, or `pending`)."""
    by_number = source.set_index("number")
    steps_col = "train.steps"
    rows = []
    for number, role in dict.fromkeys((int(i["source_trial"]), i["role"]) for i in items):
        src = by_number.loc[number] if number in by_number.index else pd.Series(dtype=object)
        row: dict[str, Any] = {"trial": number, "role": role, "short val_loss": _number(src.get("val_loss")),
                               "short steps": _number(src.get(steps_col)), f"short {QUALITY}": _number(src.get(QUALITY))}
        for budget, label in ((LONG, "long"), (SEED, "seed")):
            run = runs.get((number, budget))
            ok = run is not None and run["state"] == "COMPLETE"
            row[f"{label} val_loss"] = _number(run.get("val_loss")) if ok else math.nan
            row[f"{label} state"] = "pending" if run is None else ("complete" if ok else str(run.get("fail_reason") or "failed"))
            if budget == LONG:
                row["long steps"] = _number(run.get(steps_col)) if run is not None else math.nan
                row["long trial"] = int(run["number"]) if run is not None else None
                row.update({f"long {m}": _number(run.get(m)) if ok else math.nan for m in QUALITY_METRICS})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial", "role", "short val_loss", "long val_loss", "seed val_loss", "short steps",
                                        "long steps", "long trial", "long state", "seed state", f"short {QUALITY}",
                                        *(f"long {m}" for m in QUALITY_METRICS)])
    both = table[["short val_loss", "long val_loss"]].notna().all(axis=1).to_numpy()
    for budget in ("short", "long"):
        table[f"{budget} rank"] = math.nan
        table.loc[both, f"{budget} rank"] = average_ranks(table.loc[both, f"{budget} val_loss"])
    table["on long front"] = _long_front(table, by_number, objectives, directions)
    table["on long quality front"] = _long_front(table, by_number, *_quality_objectives(objectives, directions))
    return table


def _long_front(table: pd.DataFrame, by_number: pd.DataFrame, objectives: list[str], directions: list[str]) -> list:
    """Per row: on the front of the rows with every long-budget value `objectives` need (what
    the retrain measured at the long budget, the source trial's value for the rest); None for
    the rows without."""
    long = [f"long {o}" for o in objectives if o in _LONG_RUN]
    has_long = (table[long].notna().all(axis=1) if long else table["long val_loss"].notna()).to_numpy()
    out: list = [None] * len(table)
    if has_long.any():
        values = np.array([[table.loc[i, f"long {o}"] if o in _LONG_RUN else _number(by_number.loc[n].get(o))
                            for o in objectives] for i, n in zip(table.index[has_long], table["trial"][has_long])])
        for position, on in zip(np.flatnonzero(has_long), pareto_mask(values, directions).tolist()):
            out[position] = on
    return out


def _speed(record: dict | None, source: pd.DataFrame) -> pd.DataFrame:
    """Per front member and re-measured metric: median, min and max over the rounds, the rounds,
    and the value the study recorded."""
    columns = ["trial", "metric", "median", "low", "high", "rounds", "study"]
    if not record or not record.get("values"):
        return pd.DataFrame(columns=columns)
    values = pd.DataFrame(record["values"], columns=["round", "trial", "metric", "value"])
    by_number = source.set_index("number")
    rows = []
    for (number, metric), group in values.groupby(["trial", "metric"], sort=False):
        study = _number(by_number.loc[number].get(metric)) if number in by_number.index else math.nan
        rows.append({"trial": int(number), "metric": metric, "median": float(group["value"].median()),
                     "low": float(group["value"].min()), "high": float(group["value"].max()),
                     "rounds": int(group["round"].nunique()), "study": study})
    return pd.DataFrame(rows, columns=columns)


def _pairs(source: pd.DataFrame, table: pd.DataFrame, speed: pd.DataFrame, objectives: list[str],
           directions: list[str]) -> pd.DataFrame:
    """Pairs of front members whose place on the front rests on one re-measured metric (see the
    module docstring): the member at least as good in every other objective, the one with the edge
    in the metric, the metric, and the verdict (TIED, REVERSED, or HOLDS)."""
    columns = ["better_in_rest", "edge_in_metric", "metric", "verdict"]
    if speed.empty:
        return pd.DataFrame(columns=columns)
    members = table[table["role"] == FRONT]["trial"].tolist()
    by_number = source.set_index("number")
    sign = {o: 1.0 if d == "minimize" else -1.0 for o, d in zip(objectives, directions)}
    ranges = {(int(r.trial), r.metric): (r.low, r.high) for r in speed.itertuples()}
    rows = []
    for metric in [m for m in dict.fromkeys(speed["metric"]) if m in sign]:
        others = [o for o in objectives if o != metric]
        for a in members:
            for b in members:
                if a == b or (a, metric) not in ranges or (b, metric) not in ranges:
                    continue
                if not all(sign[o] * _number(by_number.loc[a].get(o)) <= sign[o] * _number(by_number.loc[b].get(o))
                           for o in others):
                    continue
                (a_lo, a_hi), (b_lo, b_hi) = ranges[(a, metric)], ranges[(b, metric)]
                if a_hi < b_lo or b_hi < a_lo:  # disjoint: whose range is better?
                    a_better = (a_hi < b_lo) == (sign[metric] > 0)
                    verdict = REVERSED if a_better else HOLDS
                else:
                    verdict = TIED
                rows.append({"better_in_rest": a, "edge_in_metric": b, "metric": metric, "verdict": verdict})
    return pd.DataFrame(rows, columns=columns)


def verdict(v: Verification) -> str:
    """The plain-words summary (see the module docstring for the words)."""
    short = f"{v.short_steps[0]}-step" if len(v.short_steps) == 1 else "short-budget"
    long = f"{v.long_steps[0]} steps" if len(v.long_steps) == 1 else "the longer budgets"
    if v.tau.n < MIN_PAIRS or not math.isfinite(v.tau.value):
        text = f"too few retrained trials to rank ({v.tau.n} with both losses)"
    else:
        text = f"the {short} ranking {_held(v.tau)} at {long} ({v.tau.format()}){_caveat(v.tau)}"
    if v.front_size:
        text += f"; {v.kept} of {v.front_size} front members stayed on the front"
    q = v.quality
    if q is not None:
        if q.tau.n < MIN_PAIRS or not math.isfinite(q.tau.value):
            text += f"; too few retrained trials to rank by sample quality ({q.tau.n} with an FD at {long})"
        else:
            text += (f"; in sample quality, the {short} {q.short} ranking {_held(q.tau)} against the FD at {long} "
                     f"({q.tau.format()}){_caveat(q.tau)}")
        if q.front_size:
            text += f", and {q.kept} of {q.front_size} front members stayed on the front in FD"
    if v.seed_tau is not None and math.isfinite(v.seed_tau.value):
        text += f"; another seed at the {short} budget agrees with {v.seed_tau.format()} (the noise floor)"
    ties = int((v.pairs["verdict"] == TIED).sum()) if len(v.pairs) else 0
    if ties:
        text += f"; {ties} front {'pair is' if ties == 1 else 'pairs are'} {TIED} in speed"
    if v.pending:
        text += f" ({v.pending} retrains not finished yet)"
    return text


def _held(a: Agreement) -> str:
    tau = a.value
    return "held" if tau >= 0.8 else "mostly held" if tau >= 0.5 else "held only weakly" if tau > 0 else "did not hold"


def _caveat(a: Agreement) -> str:
    if a.interval is not None and a.value > 0 and a.interval[0] <= 0:
        return ", though its interval reaches 0: too few trials to tell"
    return ""


def _unique(values: pd.Series) -> list[int]:
    return sorted({int(x) for x in values.dropna()})


def _number(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


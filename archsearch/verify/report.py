"""A verification rendered: verify.md, its plots, the section of `archsearch report`, the summary.

    files = write_verification(v, study_dir)      # verify.md, plots/verify-ranks.png, -front.png (-quality.png)
    blocks = verify_blocks(v, figures, level=3)   # the report's section, under its own heading

Every rendering reads one `Verification` (archsearch.verify.analysis), so verify.md, the report's
section and the printed summary say the same. No torch; matplotlib inside the plot functions.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.console import Console

from ..io import atomic_write_text
from ..metrics import QUALITY_METRICS
from ..report.console import format_metric
from ..report.document import Block, Bullets, Heading, Image, Paragraph, Table, to_markdown
from ..report.plots import axis_label, pyplot, save_figure
from .analysis import HOLDS, QUALITY, QUALITY_COLUMN, TIED, Verification
from .selection import FRONT
from .stats import CONFIDENCE, RESAMPLES, SEED, Agreement

__all__ = ["verify_blocks", "draw_verification", "write_verification", "print_verification", "SECTION_TITLE"]

SECTION_TITLE = "Would the ranking hold with longer training?"
_FRONT_COLOR, _OTHER_COLOR = "#d62728", "#7f9fbf"


def draw_verification(v: Verification, plots_dir: Path, prefix: str = "") -> dict[str, Path]:
    """The rank plot, (with a re-measurement) the front's speed plot and (with sample quality)
    the quality plot, keyed `verify-ranks`, `verify-front` and `verify-quality` (after `prefix`)."""
    out = {}
    for key, draw in (("verify-ranks", plot_ranks), ("verify-front", plot_front_speed), ("verify-quality", plot_quality)):
        path = draw(v, Path(plots_dir) / f"{prefix}{key}.png")
        if path is not None:
            out[f"{prefix}{key}"] = path
    return out


def plot_ranks(v: Verification, path: Path) -> Path | None:
    """Left: short- against long-budget loss, one point per retrained trial, front members red,
    a ring on those on the long-budget front. Right: each trial's rank at both budgets, joined."""
    both = v.table.dropna(subset=["short val_loss", "long val_loss"])
    if both.empty:
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    for role, color, label in ((FRONT, _FRONT_COLOR, "on the short-budget front"), ("dominated", _OTHER_COLOR, "dominated")):
        rows = both[both["role"] == role]
        if len(rows):
            left.scatter(rows["short val_loss"], rows["long val_loss"], s=46, color=color, zorder=3, label=f"{label} ({len(rows)})")
    kept = both[both["on long front"] == True]  # noqa: E712
    left.scatter(kept["short val_loss"], kept["long val_loss"], s=150, facecolor="none", edgecolor="black", lw=1.1, zorder=4,
                 label=f"on the long-budget front ({len(kept)})")
    for _, row in both.iterrows():
        left.annotate(f"#{int(row['trial'])}", (row["short val_loss"], row["long val_loss"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=8)
    left.set_xlabel(f"{axis_label('val_loss')} at {_steps(v.short_steps)}")
    left.set_ylabel(f"validation loss at {_steps(v.long_steps)}")
    left.set_title(f"{v.source}: {v.tau.format()}, {v.rho.format()}")
    left.legend(loc="best")
    for _, row in both.iterrows():
        color = _FRONT_COLOR if row["role"] == FRONT else _OTHER_COLOR
        right.plot([0, 1], [row["short rank"], row["long rank"]], "-o", color=color, lw=1.4, ms=5)
        right.annotate(f"#{int(row['trial'])}", (1, row["long rank"]), textcoords="offset points", xytext=(6, -3), fontsize=8)
    from matplotlib.ticker import MaxNLocator

    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xticks([0, 1], [_steps(v.short_steps), _steps(v.long_steps)])
    right.set_xlim(-0.25, 1.35)
    right.invert_yaxis()
    right.set_ylabel("rank by validation loss (1 = best)")
    right.set_title("rank lines")
    return save_figure(fig, path)


def plot_quality(v: Verification, path: Path) -> Path | None:
    """Left: the search's short-run objective against the long-budget FD; right: the long-budget
    loss against it. One point per retrained trial, front members red, a ring on those on the
    long-budget front in quality."""
    q = v.quality
    if q is None:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = ((f"short {q.short}", f"{axis_label(q.short)} at {_steps(v.short_steps)}", q.tau, q.rho),
              ("long val_loss", f"validation loss at {_steps(v.long_steps)}", q.loss_tau, q.loss_rho))
    for ax, (column, xlabel, tau, rho) in zip(axes, panels):
        rows = v.table.dropna(subset=[column, QUALITY_COLUMN])
        for role, color, label in ((FRONT, _FRONT_COLOR, "on the short-budget front"), ("dominated", _OTHER_COLOR, "dominated")):
            some = rows[rows["role"] == role]
            if len(some):
                ax.scatter(some[column], some[QUALITY_COLUMN], s=46, color=color, zorder=3, label=f"{label} ({len(some)})")
        kept = rows[rows["on long quality front"] == True]  # noqa: E712
        ax.scatter(kept[column], kept[QUALITY_COLUMN], s=150, facecolor="none", edgecolor="black", lw=1.1, zorder=4,
                   label=f"on the long-budget front in quality ({len(kept)})")
        for _, row in rows.iterrows():
            ax.annotate(f"#{int(row['trial'])}", (row[column], row[QUALITY_COLUMN]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{axis_label(QUALITY, 'minimize')} at {_steps(v.long_steps)}")
        ax.set_title(f"{tau.format()}, {rho.format()}")
        ax.legend(loc="best")
    fig.suptitle(f"{v.source}: does the ranking hold in sample quality?")
    return save_figure(fig, path)


def plot_front_speed(v: Verification, path: Path) -> Path | None:
    """The front's validation loss against its re-measured speed: the median of the rounds, a bar
    from their minimum to their maximum, the study's value as a cross; tied pairs joined, dashed."""
    if v.speed.empty:
        return None
    metric = v.speed["metric"].iloc[0]
    speed = v.speed[v.speed["metric"] == metric].merge(v.table[["trial", "short val_loss"]], on="trial")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    ax.errorbar(speed["median"], speed["short val_loss"], xerr=[speed["median"] - speed["low"], speed["high"] - speed["median"]],
                fmt="o", color=_FRONT_COLOR, ecolor="#444444", capsize=4, zorder=3,
                label=f"re-measured: median, min–max of {int(speed['rounds'].max())} rounds")
    ax.scatter(speed["study"], speed["short val_loss"], marker="x", color="#555555", zorder=2, label="as the study measured it")
    for _, row in speed.iterrows():
        ax.annotate(f"#{int(row['trial'])}", (row["median"], row["short val_loss"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    at = speed.set_index("trial")
    tied = v.pairs[(v.pairs["verdict"] == TIED) & (v.pairs["metric"] == metric)] if len(v.pairs) else v.pairs
    for i, pair in enumerate(tied.itertuples()):
        a, b = at.loc[pair.better_in_rest], at.loc[pair.edge_in_metric]
        ax.plot([a["median"], b["median"]], [a["short val_loss"], b["short val_loss"]], "--", color="#9467bd",
                lw=1.2, label=TIED if i == 0 else None)
    ax.set_xlabel(axis_label(metric, v.directions[v.objectives.index(metric)] if metric in v.objectives else None))
    ax.set_ylabel(axis_label("val_loss", "minimize"))
    ax.set_title(f"{v.source}: the front's speed, re-measured")
    ax.legend(loc="best")
    return save_figure(fig, path)


def verify_blocks(v: Verification, figures: dict[str, Path], level: int = 2, prefix: str = "") -> list[Block]:
    """The verdict, then the ranking, the front and the speed sections at heading `level`."""
    pct = int(round(CONFIDENCE * 100))
    blocks: list[Block] = [Paragraph(f"**{_capital(v.verdict)}.**")]
    rows = [{"between": f"{_steps(v.short_steps)} and {_steps(v.long_steps)}", "trials": v.tau.n,
             "Kendall τ": v.tau.format(), "Spearman ρ": v.rho.format()}]
    if v.seed_tau is not None:
        rows.append({"between": f"two seeds at {_steps(v.short_steps)} (noise floor)", "trials": v.seed_tau.n,
                     "Kendall τ": v.seed_tau.format(), "Spearman ρ": v.seed_rho.format()})
    blocks += [Heading("Ranking at the longer budget", level), Table(pd.DataFrame(rows), caption=(
        f"Rank correlations of the validation loss over the retrained trials, with percentile-bootstrap {pct}% intervals "
        f"({RESAMPLES} resamples of the trial pairs, seed {SEED}); 1 = the same order, 0 = unrelated."))]
    if f"{prefix}verify-ranks" in figures:
        blocks.append(Image(figures[f"{prefix}verify-ranks"], "short- against long-budget loss, and rank lines"))
    blocks += [Heading("The front at the longer budget", level), Paragraph(_front_sentence(v)), Table(_trial_rows(v))]
    if v.quality is not None:
        blocks += _quality_blocks(v, figures, level, prefix)
    if not v.speed.empty:
        blocks += [Heading("The front's speed, re-measured", level), Paragraph(_speed_sentence(v)), Table(_speed_rows(v))]
        notable = v.pairs[v.pairs["verdict"] != HOLDS] if len(v.pairs) else v.pairs
        if len(notable):
            blocks.append(Bullets([_pair_line(p) for p in notable.itertuples()]))
        if len(v.pairs):
            blocks.append(Paragraph(f"{len(v.pairs) - len(notable)} of the {len(v.pairs)} pairs that rest on speed keep "
                                    "their order: their ranges do not overlap."))
        if f"{prefix}verify-front" in figures:
            blocks.append(Image(figures[f"{prefix}verify-front"], "the front with its re-measured speed"))
    blocks.append(Paragraph(f"Retrained in the study `{v.name}` of the same storage (`archsearch results STUDY_DIR --study "
                            f"{v.name}`); each trial's `source_trial` names the trial it retrains, `budget` says whether it "
                            "ran longer (`long`) or at the original budget with the next seed (`seed`), `train.steps` how long."))
    return blocks


def _quality_pairs(v: Verification) -> list[tuple[str, str, Agreement, Agreement]]:
    """The quality figures: what is ranked against what, τ and ρ."""
    q, fd = v.quality, f"{QUALITY} at {_steps(v.long_steps)}"
    return [(f"{q.short} at {_steps(v.short_steps)}", fd, q.tau, q.rho),
            (f"val_loss at {_steps(v.long_steps)}", fd, q.loss_tau, q.loss_rho)]


def _quality_blocks(v: Verification, figures: dict[str, Path], level: int, prefix: str) -> list[Block]:
    q = v.quality
    pct = int(round(CONFIDENCE * 100))
    searched = "the FD it searched on" if q.short == QUALITY else "its validation loss"
    blocks: list[Block] = [
        Heading("Sample quality at the longer budget", level),
        Paragraph(f"Each retrain's sample quality measured after its {_steps(v.long_steps)} (`eval.quality`; "
                  f"{QUALITY} lower is better). Does the search's ranking by {searched} at {_steps(v.short_steps)} "
                  f"predict the longer run's {QUALITY}, and does the longer run's loss rank it?"),
        Table(pd.DataFrame([{"between": f"{x} and {y}", "trials": tau.n, "Kendall τ": tau.format(),
                             "Spearman ρ": rho.format()} for x, y, tau, rho in _quality_pairs(v)]), caption=(
            f"Rank correlations over the retrained trials with a long-budget {QUALITY}, percentile-bootstrap {pct}% "
            f"intervals ({RESAMPLES} resamples of the trial pairs, seed {SEED}); a positive value: the lower the one, "
            f"the lower the other.")),
        Paragraph(f"The front in quality: {_quality_front_sentence(v)}")]
    if f"{prefix}verify-quality" in figures:
        blocks.append(Image(figures[f"{prefix}verify-quality"], "short-run objective and long-run loss against long-run FD"))
    return blocks


def _quality_front_sentence(v: Verification) -> str:
    q = v.quality
    if not q.front_size:
        return f"no front member has a long-budget {QUALITY} yet."
    return (f"{q.kept} of {q.front_size} front members stay on the front of the retrained trials at "
            f"{_steps(v.long_steps)} in ({', '.join(q.objectives)}), the long-budget {QUALITY}"
            f"{' in place of the loss' if 'val_loss' in v.objectives else ''}: recall "
            f"{_ratio(q.recall)}, precision {_ratio(q.precision)} ({len(q.long_front)} trials on it).")


def _front_sentence(v: Verification) -> str:
    if not v.front_size:
        return "No front member has a long-budget loss yet."
    replaced = [o for o in v.objectives if o == "val_loss" or o in QUALITY_METRICS]
    what = "val_loss replaced by the long-budget loss" if replaced == ["val_loss"] else \
        f"{', '.join(replaced)} replaced by the long-budget values"
    return (f"{v.kept} of {v.front_size} front members stay on the front of the retrained trials at {_steps(v.long_steps)} "
            f"(objectives as in the study, {what}): recall {_ratio(v.recall)}, precision "
            f"{_ratio(v.precision)} ({len(v.long_front)} trials on the long-budget front).")


def _trial_rows(v: Verification) -> pd.DataFrame:
    rows = []
    for _, r in v.table.iterrows():
        on = r["on long front"]
        place = "–" if on is None else ("stays" if on else "drops") if r["role"] == FRONT else ("joins" if on else "–")
        row = {"trial": f"#{int(r['trial'])}", "role": r["role"], "val_loss short": format_metric("val_loss", r["short val_loss"]),
               "val_loss long": format_metric("val_loss", r["long val_loss"]) if r["long state"] == "complete" else r["long state"],
               "rank short → long": _ranks(r), "long-budget front": place}
        if v.seed_tau is not None:
            row["val_loss, next seed"] = format_metric("val_loss", r["seed val_loss"]) if r["seed state"] == "complete" else r["seed state"]
        if v.quality is not None:
            row.update(_quality_cells(v, r))
        rows.append(row)
    return pd.DataFrame(rows)


def _quality_cells(v: Verification, r) -> dict[str, str]:
    """A trial's long-budget quality metrics (those any retrain measured) and its place on the front in quality."""
    cells = {}
    if v.quality.short == QUALITY:
        cells[f"{QUALITY} short"] = format_metric(QUALITY, r[f"short {QUALITY}"])
    for m in QUALITY_METRICS:
        if v.table[f"long {m}"].notna().any():
            cells[f"{m} long"] = format_metric(m, r[f"long {m}"]) if math.isfinite(r[f"long {m}"]) else "–"
    on = r["on long quality front"]
    cells["front in quality"] = "–" if on is None else ("stays" if on else "drops") if r["role"] == FRONT else (
        "joins" if on else "–")
    return cells


def _speed_sentence(v: Verification) -> str:
    record = v.remeasure or {}
    return (f"Each front member's speed measured again in {record.get('rounds')} interleaved rounds on "
            f"{record.get('device', 'this machine')} (round-robin, each round starting one member later; archsearch.measure's "
            f"protocol with the study's `measure` settings). A pair whose ranges overlap is {TIED}: the faster one's place on the "
            f"front rests on a difference the machine's own noise makes.")


def _speed_rows(v: Verification) -> pd.DataFrame:
    return pd.DataFrame([{"trial": f"#{int(r.trial)}", "metric": r.metric, "in the study": format_metric(r.metric, r.study),
                          "re-measured median [min, max]": f"{format_metric(r.metric, r.median)} "
                                                           f"[{format_metric(r.metric, r.low)}, {format_metric(r.metric, r.high)}]"}
                         for r in v.speed.itertuples()])


def _pair_line(pair) -> str:
    a, b = pair.better_in_rest, pair.edge_in_metric
    if pair.verdict == TIED:
        return (f"#{b} and #{a}: {TIED} in {pair.metric}; #{b} is on the front only by its {pair.metric}, and #{a} is "
                "at least as good in every other objective")
    return f"#{a} dominates #{b} as re-measured: #{a}'s {pair.metric} range is better throughout"


def write_verification(v: Verification, study_dir: Path) -> list[Path]:
    """verify.md and its plots (under plots/) in the study folder."""
    study_dir = Path(study_dir)
    figures = draw_verification(v, study_dir / "plots")
    blocks = [Heading(f"Verification of {v.source}: {SECTION_TITLE.lower()}", 1), *verify_blocks(v, figures, 2)]
    md = atomic_write_text(study_dir / "verify.md", to_markdown(blocks, study_dir))
    return [md, *figures.values()]


def print_verification(v: Verification, files: list[Path], storage: str, console: Console) -> None:
    """The verdict, the correlations and where the files are."""
    console.print(_capital(v.verdict))
    for label, agreement in (("short vs long", (v.tau, v.rho)), ("noise floor", (v.seed_tau, v.seed_rho))):
        if agreement[0] is not None:
            console.print(f"  {label}: {agreement[0].format()}, {agreement[1].format()}", highlight=False)
    if v.quality is not None:
        for x, y, tau, rho in _quality_pairs(v):
            console.print(f"  {x} vs {y}: {tau.format()}, {rho.format()}", highlight=False)
        console.print(f"  front in quality: {_quality_front_sentence(v)}", highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in files)} (study {v.name}, storage: {storage})")


def _steps(steps: list[int]) -> str:
    return f"{steps[0]} steps" if len(steps) == 1 else "the trials' budgets" if not steps else f"{min(steps)}–{max(steps)} steps"


def _ranks(row) -> str:
    if not (math.isfinite(row["short rank"]) and math.isfinite(row["long rank"])):
        return "–"
    return f"{row['short rank']:g} → {row['long rank']:g}"


def _ratio(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.0%}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

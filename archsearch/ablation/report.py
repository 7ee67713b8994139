"""The ablation report: ablation.csv, ablation.md, plots/forest.png and a rich table.

    comparisons = compare_variants(runs, descriptions, seeds)
    paths = write_report(comparisons, study_dir, title="seed_design_choices")
    show(console, comparison_table(comparisons))

Every rendering reads the same `Comparison` list (archsearch.ablation.stats), so the numbers in
the table, the markdown and the plot agree, and each shows every metric the comparisons hold
(`Comparison.changes`: the loss and the speed, and the quality metrics when they were measured),
labelled from the metric registry. Matplotlib is imported inside `forest_plot` only.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.text import Text

from ..io import atomic_write, atomic_write_text
from ..metrics import METRICS
from ..report.tables import Column, TextTable
from .stats import CONFIDENCE, NO_DIFFERENCE, Change, Comparison, Interval, in_percent

__all__ = ["comparison_frame", "comparison_markdown", "comparison_markdown_table", "comparison_table", "forest_data", "forest_plot",
           "summary_line", "write_report"]

_GOOD, _BAD = ("better", "faster"), ("worse", "slower")
_COLORS = {"good": "#1b9e3a", "bad": "#d62728", "none": "#6b6b6b"}


def _kind(verdict: str) -> str:
    return "good" if verdict in _GOOD else "bad" if verdict in _BAD else "none"


def _fmt_count(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{int(value):,}"


def _fmt_change(value: float) -> str:
    return "" if not math.isfinite(value) or value == 0 else f" ({value:+.1f}%)"


def _cells(interval: Interval | None) -> tuple[float, float, float]:
    if interval is None:
        return math.nan, math.nan, math.nan
    low = interval.low if interval.low is not None else math.nan
    high = interval.high if interval.high is not None else math.nan
    return interval.mean, low, high


# The verdict columns of the loss and the speed keep the names ablation.csv has always given them.
_VERDICT_COLUMNS = {"val_loss": "loss_verdict", "train_throughput": "throughput_verdict"}


def _metrics(comparisons: list[Comparison]) -> list[str]:
    return list(comparisons[0].changes) if comparisons else []


def _quality(comparisons: list[Comparison]) -> list[str]:
    return [m for m in _metrics(comparisons) if METRICS[m].quality]


def comparison_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """The rows of ablation.csv: one per network, with each compared metric's mean and its
    differences in % of the base (`delta_<metric>_pct`, empty where a value is not positive) and
    absolute (`delta_<metric>_abs`), each with its interval's ends, and its verdict."""
    base = comparisons[0]
    metrics = _metrics(comparisons)
    rows = []
    for c in comparisons:
        row = {"variant": c.variant, "description": c.description, "status": c.status, "seeds": c.seeds_done - len(c.failed)}
        row.update({m: c.changes[m].mean for m in metrics})
        for m in metrics:
            for suffix, interval in (("pct", c.changes[m].relative), ("abs", c.changes[m].absolute)):
                mean, low, high = _cells(interval)
                row.update({f"delta_{m}_{suffix}": mean, f"delta_{m}_{suffix}_low": low, f"delta_{m}_{suffix}_high": high})
        row.update({_VERDICT_COLUMNS.get(m, f"{m}_verdict"): c.changes[m].verdict for m in metrics})
        row.update(params=c.params, params_change_pct=c.params_change(base), flops=c.flops, flops_change_pct=c.flops_change(base))
        rows.append(row)
    return pd.DataFrame(rows)


# How the loss and the speed have always been named in the words and the tables; every other
# metric goes by its registry name (fd, kid, ...), as in trials.csv.
_SHORT = {"val_loss": "val loss", "train_throughput": "throughput"}


def _words(change: Change) -> str:
    """`val loss +3.1% [+1.2, +5.0] (worse)`, `fd -4.21 [-7.37, -1.05] (better)`."""
    return f"{_SHORT.get(change.metric, change.metric)} {change.format()} ({change.verdict})"


def _value(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.4g}"


def summary_line(c: Comparison, base: Comparison) -> str:
    """`add-skips: val loss +3.1% [+1.2, +5.0] (worse), throughput +18.0% [+15.0, +21.0] (faster)`,
    then `, fd -4.21 [-7.37, -1.05] (better)` and the other quality metrics when measured."""
    if c.loss is None or c.loss.n == 0:
        return f"{c.variant}: {c.status}"
    text = f"{c.variant}: " + ", ".join(_words(change) for change in c.changes.values())
    changes = [f"{label} {value:+.1f}%" for label, value in (("params", c.params_change(base)), ("FLOPs", c.flops_change(base)))
               if math.isfinite(value) and value != 0]
    if changes:
        text += "; " + ", ".join(changes)
    if c.failed:
        text += f" [seeds {c.status}]"
    return text


def comparison_markdown(comparisons: list[Comparison], title: str, seeds: int, plot: str | None = "plots/forest.png") -> str:
    """ablation.md: how the comparison was made, the base, the table, the verdicts in words."""
    base = comparisons[0]
    pct = int(round(CONFIDENCE * 100))
    lines = [
        f"# Ablation: {title}",
        "",
        f"Each variant against the base ({base.description}) over {seeds} training seeds, paired by seed (same "
        f"initial weights, batches and noise): the change is exp(mean log ratio) - 1 of the per-seed ratios "
        f"variant/base, with a {pct}% Student-t interval on the log ratios (so never below -100%). A verdict "
        "needs the whole interval on one side of zero; intervals are per variant (not corrected for the number of "
        "variants). Validation loss: lower is better; training throughput: images/s, forward+backward+AdamW.",
        *_quality_note(comparisons),
        "",
        comparison_markdown_table(comparisons),
    ]
    lines += ["", "## In words", ""]
    lines += [f"- {summary_line(c, base)}" for c in comparisons[1:]]
    if plot:
        lines += ["", f"![forest plot]({plot})"]
    return "\n".join(lines) + "\n"


def _quality_note(comparisons: list[Comparison]) -> list[str]:
    quality = _quality(comparisons)
    if not quality:
        return []
    return ["", "Sample quality is compared as the difference variant - base in the metric's own units, with the "
                "same paired t-interval over the seeds: "
                + "; ".join(f"{m}, {METRICS[m].label}: {'lower' if METRICS[m].direction == 'minimize' else 'higher'} "
                            "is better" for m in quality) + "."]


def comparison_markdown_table(comparisons: list[Comparison]) -> str:
    """The base's line and the table of variants (ablation.md, and the README's seed ablation)."""
    base = comparisons[0]
    metrics = _metrics(comparisons)
    pct = int(round(CONFIDENCE * 100))
    quality = "".join(f", {m} {_value(base.changes[m].mean)}" for m in _quality(comparisons))
    header = "".join(f" Δ {_SHORT.get(m, m)} [{pct}% CI] | verdict |" for m in metrics)
    lines = [
        f"Base: val loss {base.val_loss:.4g}, {base.train_throughput:.4g} images/s{quality}, {_fmt_count(base.params)} "
        f"parameters, {_fmt_count(base.flops)} FLOPs per image (seeds {base.status}).",
        "",
        f"| variant | description |{header} params | FLOPs | seeds |",
        "|---|---|" + "---|---|" * len(metrics) + "---:|---:|---|",
    ]
    for c in comparisons[1:]:
        changes = "".join(f" {c.changes[m].format()} | {c.changes[m].verdict} |" for m in metrics)
        lines.append(f"| {c.variant} | {c.description} |{changes} "
                     f"{_fmt_count(c.params)}{_fmt_change(c.params_change(base))} | "
                     f"{_fmt_count(c.flops)}{_fmt_change(c.flops_change(base))} | {c.status} |")
    return "\n".join(lines)


def comparison_table(comparisons: list[Comparison], title: str = "ablation") -> TextTable:
    """The table `archsearch ablate` prints (with `tables.show`): the base's values, then each
    variant's changes (Δ [CI] over the line of its verdict)."""
    base = comparisons[0]
    pct = int(round(CONFIDENCE * 100))
    quality = _quality(comparisons)
    # The first quality metric (fd, when measured) is kept before the seeds; the others go first.
    columns = [Column("variant", priority=9, justify="left"), Column("val loss", priority=8),
               Column("train throughput", priority=7),
               *(Column(m, priority=6 if i == 0 else 1) for i, m in enumerate(quality)),
               Column("params", priority=3), Column("FLOPs", priority=2),
               Column("seeds", priority=5, justify="left", wrap=True)]
    units = "".join(f", {m}" for m in quality)
    table = TextTable(f"{title}: each variant vs the base (Δ% [{pct}% CI], paired by seed"
                      + (f"; {', '.join(quality)}: Δ in their units" if quality else "") + ")", columns,
                      caption=f"base: val loss (MSE), train throughput (img/s){units}, params, FLOPs per image; "
                              "variants: their change from the base")
    table.add_row(base.variant, f"{base.val_loss:.4g}", f"{base.train_throughput:.4g}",
                  *(_value(base.changes[m].mean) for m in quality),
                  _fmt_count(base.params), _fmt_count(base.flops), base.status, style="dim")
    for c in comparisons[1:]:
        table.add_row(
            c.variant,
            *(_cell(c.changes[m]) for m in ("val_loss", "train_throughput", *quality)),
            _fmt_change(c.params_change(base)).strip(" ()") or "same",
            _fmt_change(c.flops_change(base)).strip(" ()") or "same",
            c.status,
        )
    return table


def _cell(change: Change) -> Text:
    style = {"good": "green", "bad": "red"}.get(_kind(change.verdict))
    text = "no difference" if change.verdict == NO_DIFFERENCE else change.verdict  # the table's short form
    return Text.assemble(change.format(), "\n", (text, style or ""))


def _panel_label(metric: str) -> str:
    """`Δ validation loss vs base (%)   ← better`, `Δ Fréchet distance (FD) vs base   ← better`."""
    info = METRICS[metric]
    good = "faster" if info.timed else "better"
    arrow = f"← {good}" if info.direction == "minimize" else f"{good} →"
    if in_percent(metric):
        return f"Δ {info.label.split(' (')[0]} vs base (%)   {arrow}"
    return f"Δ {info.label} vs base   {arrow}"


def forest_data(comparisons: list[Comparison]) -> pd.DataFrame:
    """What the forest plot draws: one row per variant and compared metric, its panel's label,
    the headlined change (mean, low, high; % for a loss or a speed, units for a quality metric),
    its verdict and whether it has an interval."""
    rows = []
    for metric in _metrics(comparisons):
        for c in comparisons[1:]:
            change = c.changes[metric]
            mean, low, high = _cells(change.shown)
            rows.append({"metric": metric, "panel": _panel_label(metric), "variant": c.variant, "status": c.status,
                         "mean": mean, "low": low, "high": high, "verdict": change.verdict,
                         "n": change.shown.n if change.shown is not None else 0})
    return pd.DataFrame(rows, columns=["metric", "panel", "variant", "status", "mean", "low", "high", "verdict", "n"])


def forest_plot(comparisons: list[Comparison], path: str | Path, title: str, seeds: int) -> Path:
    """A panel per compared metric (Δ val loss %, Δ throughput %, then Δ fd, ... when sample quality
    was measured; three to a row), one row per variant: mean and CI bar, zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    data = forest_data(comparisons)
    variants = comparisons[1:]
    metrics = _metrics(comparisons)
    ncols = len(metrics) if len(metrics) <= 3 else math.ceil(len(metrics) / 2)
    nrows = math.ceil(len(metrics) / ncols)
    height = 0.8 + nrows * (1.2 + 0.45 * max(len(variants), 1))  # inches: title and legend, then per row of panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, height), sharey=True, squeeze=False)
    rows = list(range(len(variants)))[::-1]  # the first variant on top
    for ax, metric in zip(axes.flat, metrics):
        panel = data[data["metric"] == metric]
        ax.axvline(0.0, color="black", linewidth=0.9, zorder=1)
        for y, r in zip(rows, panel.itertuples()):
            if r.n == 0:
                ax.text(0.0, y, f"  {r.status}", va="center", ha="left", fontsize=8, color=_COLORS["bad"])
                continue
            color = _COLORS[_kind(r.verdict)]
            has_interval = math.isfinite(r.low) and math.isfinite(r.high)
            if has_interval:
                ax.plot([r.low, r.high], [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=2)
                ax.plot([r.low, r.high], [y, y], "|", color=color, markersize=9, zorder=2)
            ax.plot([r.mean], [y], "o", color=color, markersize=7, zorder=3, markerfacecolor=color if has_interval else "white")
        ax.set_xlabel(panel["panel"].iloc[0] if len(panel) else _panel_label(metric))
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(rows, [c.variant for c in variants])
        ax.set_ylim(-0.7, len(variants) - 0.3)
    pct = int(round(CONFIDENCE * 100))
    fig.suptitle(f"Ablation {title}: each variant vs the base (mean over {seeds} seeds, {pct}% paired t-interval)")
    handles = [
        Line2D([], [], color=_COLORS["good"], marker="o", linewidth=2.2, label="better / faster (interval excludes 0)"),
        Line2D([], [], color=_COLORS["bad"], marker="o", linewidth=2.2, label="worse / slower (interval excludes 0)"),
        Line2D([], [], color=_COLORS["none"], marker="o", linewidth=2.2, label=NO_DIFFERENCE),
        Line2D([], [], color=_COLORS["none"], marker="o", markerfacecolor="white", linestyle="none",
               label="one seed: no interval"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))  # keep 0.35 in at the bottom for the legend
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
    plt.close(fig)
    return path


def write_report(comparisons: list[Comparison], study_dir: str | Path, title: str, seeds: int) -> list[Path]:
    """Write ablation.csv, ablation.md and plots/forest.png into the study folder."""
    study_dir = Path(study_dir)
    csv = atomic_write(study_dir / "ablation.csv", lambda tmp: comparison_frame(comparisons).to_csv(tmp, index=False))
    plot = forest_plot(comparisons, study_dir / "plots" / "forest.png", title, seeds)
    md = atomic_write_text(study_dir / "ablation.md", comparison_markdown(comparisons, title, seeds))
    return [md, csv, plot]

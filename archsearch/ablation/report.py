"""The ablation report: ablation.csv, ablation.md, plots/forest.png and a rich table.

    comparisons = compare_variants(runs, descriptions, seeds)
    paths = write_report(comparisons, study_dir, title="seed_design_choices")
    show(console, comparison_table(comparisons))

Every rendering reads the same `Comparison` list (archsearch.ablation.stats), so the numbers in
the table, the markdown and the plot agree. Matplotlib is imported inside `forest_plot` only.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.text import Text

from ..io import atomic_write, atomic_write_text
from ..report.tables import Column, TextTable
from .stats import CONFIDENCE, NO_DIFFERENCE, Comparison, Interval

__all__ = ["comparison_frame", "comparison_markdown", "comparison_markdown_table", "comparison_table", "forest_plot", "summary_line", "write_report"]

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


def comparison_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """The rows of ablation.csv: one per network, differences in % of the base and absolute."""
    base = comparisons[0]
    rows = []
    for c in comparisons:
        row = {"variant": c.variant, "description": c.description, "status": c.status,
               "seeds": c.seeds_done - len(c.failed), "val_loss": c.val_loss, "train_throughput": c.train_throughput}
        for prefix, rel, absolute in (("val_loss", c.loss, c.loss_abs), ("train_throughput", c.throughput, c.throughput_abs)):
            for suffix, interval in (("pct", rel), ("abs", absolute)):
                mean, low, high = _cells(interval)
                row.update({f"delta_{prefix}_{suffix}": mean, f"delta_{prefix}_{suffix}_low": low,
                            f"delta_{prefix}_{suffix}_high": high})
        row.update(loss_verdict=c.loss_verdict, throughput_verdict=c.throughput_verdict, params=c.params,
                   params_change_pct=c.params_change(base), flops=c.flops, flops_change_pct=c.flops_change(base))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_line(c: Comparison, base: Comparison) -> str:
    """`add-skips: val loss +3.1% [+1.2, +5.0] (worse), throughput +18.0% [+15.0, +21.0] (faster)`."""
    if c.loss is None or c.loss.n == 0:
        return f"{c.variant}: {c.status}"
    text = (f"{c.variant}: val loss {c.loss.format()} ({c.loss_verdict}), "
            f"throughput {c.throughput.format()} ({c.throughput_verdict})")
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
        "",
        comparison_markdown_table(comparisons),
    ]
    lines += ["", "## In words", ""]
    lines += [f"- {summary_line(c, base)}" for c in comparisons[1:]]
    if plot:
        lines += ["", f"![forest plot]({plot})"]
    return "\n".join(lines) + "\n"


def comparison_markdown_table(comparisons: list[Comparison]) -> str:
    """The base's line and the table of variants (ablation.md, and the README's seed ablation)."""
    base = comparisons[0]
    pct = int(round(CONFIDENCE * 100))
    lines = [
        f"Base: val loss {base.val_loss:.4g}, {base.train_throughput:.4g} images/s, {_fmt_count(base.params)} parameters, "
        f"{_fmt_count(base.flops)} FLOPs per image (seeds {base.status}).",
        "",
        f"| variant | description | Δ val loss [{pct}% CI] | verdict | Δ throughput [{pct}% CI] | verdict | params | FLOPs | seeds |",
        "|---|---|---|---|---|---|---:|---:|---|",
    ]
    for c in comparisons[1:]:
        loss = c.loss.format() if c.loss is not None else "n/a"
        speed = c.throughput.format() if c.throughput is not None else "n/a"
        lines.append(f"| {c.variant} | {c.description} | {loss} | {c.loss_verdict} | {speed} | {c.throughput_verdict} | "
                     f"{_fmt_count(c.params)}{_fmt_change(c.params_change(base))} | "
                     f"{_fmt_count(c.flops)}{_fmt_change(c.flops_change(base))} | {c.status} |")
    return "\n".join(lines)


def comparison_table(comparisons: list[Comparison], title: str = "ablation") -> TextTable:
    """The table `archsearch ablate` prints (with `tables.show`): the base's values, then each
    variant's changes (Δ [CI] over the line of its verdict)."""
    base = comparisons[0]
    pct = int(round(CONFIDENCE * 100))
    columns = [Column("variant", priority=9, justify="left"), Column("val loss", priority=8),
               Column("train throughput", priority=7), Column("params", priority=3), Column("FLOPs", priority=2),
               Column("seeds", priority=5, justify="left", wrap=True)]
    table = TextTable(f"{title}: each variant vs the base (Δ% [{pct}% CI], paired by seed)", columns,
                      caption="base: val loss (MSE), train throughput (img/s), params, FLOPs per image; "
                              "variants: their change from the base")
    table.add_row(base.variant, f"{base.val_loss:.4g}", f"{base.train_throughput:.4g}",
                  _fmt_count(base.params), _fmt_count(base.flops), base.status, style="dim")
    for c in comparisons[1:]:
        table.add_row(
            c.variant,
            _cell(c.loss, c.loss_verdict), _cell(c.throughput, c.throughput_verdict),
            _fmt_change(c.params_change(base)).strip(" ()") or "same",
            _fmt_change(c.flops_change(base)).strip(" ()") or "same",
            c.status,
        )
    return table


def _cell(interval: Interval | None, verdict: str) -> Text:
    value = interval.format() if interval is not None else "n/a"
    style = {"good": "green", "bad": "red"}.get(_kind(verdict))
    text = "no difference" if verdict == NO_DIFFERENCE else verdict  # the table's short form
    return Text.assemble(value, "\n", (text, style or ""))


def forest_plot(comparisons: list[Comparison], path: str | Path, title: str, seeds: int) -> Path:
    """Two panels (Δ val loss %, Δ throughput %), one row per variant: mean and CI bar, zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    variants = comparisons[1:]
    height = 2.0 + 0.45 * max(len(variants), 1)  # inches: title, x labels and legend, then the rows
    fig, axes = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    rows = list(range(len(variants)))[::-1]  # the first variant on top
    panels = (("loss", "loss_verdict", "Δ validation loss vs base (%)   ← better"),
              ("throughput", "throughput_verdict", "Δ training throughput vs base (%)   faster →"))
    for ax, (attr, verdict_attr, xlabel) in zip(axes, panels):
        ax.axvline(0.0, color="black", linewidth=0.9, zorder=1)
        for y, c in zip(rows, variants):
            interval, verdict = getattr(c, attr), getattr(c, verdict_attr)
            if interval is None or interval.n == 0:
                ax.text(0.0, y, f"  {c.status}", va="center", ha="left", fontsize=8, color=_COLORS["bad"])
                continue
            color = _COLORS[_kind(verdict)]
            if interval.has_interval:
                ax.plot([interval.low, interval.high], [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=2)
                ax.plot([interval.low, interval.high], [y, y], "|", color=color, markersize=9, zorder=2)
            ax.plot([interval.mean], [y], "o", color=color, markersize=7, zorder=3,
                    markerfacecolor=color if interval.has_interval else "white")
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
    axes[0].set_yticks(rows, [c.variant for c in variants])
    axes[0].set_ylim(-0.7, len(variants) - 0.3)
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

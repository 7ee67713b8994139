"""The report's figures, drawn with matplotlib (Agg backend) from an `analysis.Report`.

    paths = draw_all(report, out_dir / "plots")   # {"pareto": Path, "hypervolume": Path, ...}

One function per figure; each takes computed data, draws, writes a PNG and returns its path
(None when there is nothing to draw). Every figure has a title, axis labels with units and a
legend, so it reads on its own when a reviewer opens the PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write
from ..metrics import METRICS
from .analysis import Report, StudyAnalysis

__all__ = ["draw_all", "axis_label", "pyplot", "save_figure", "plot_pareto", "plot_view", "view_key", "plot_hypervolume",
           "plot_importance", "plot_buckets", "plot_fronts", "plot_effects", "plot_rungs"]

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def axis_label(metric: str, direction: str | None = None) -> str:
    """`val_loss` -> 'validation loss (ε-MSE, fixed noise), lower is better'."""
    label = METRICS[metric].label if metric in METRICS else metric
    if direction:
        label += ", lower is better" if direction == "minimize" else ", higher is better"
    return label


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only), with the report's style."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 10, "axes.titlesize": 11, "axes.grid": True,
                         "grid.alpha": 0.3, "legend.fontsize": 8, "legend.framealpha": 0.9})
    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write atomically as PNG and close."""
    plt = pyplot()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def draw_all(report: Report, plots_dir: Path) -> dict[str, Path]:
    """Every figure of the report; names are prefixed by the study when there are several."""
    out: dict[str, Path] = {}
    several = len(report.studies) > 1
    for study in report.studies:
        prefix = f"{study.name}-" if several else ""
        for key, draw in (("pareto", plot_pareto), ("importance", plot_importance), ("buckets", plot_buckets),
                          ("effects", plot_effects), ("rungs", plot_rungs)):
            path = draw(study, report, plots_dir / f"{prefix}{key}.png")
            if path is not None:
                out[f"{prefix}{key}"] = path
        if study.view is not None:
            key = prefix + view_key(study.view.metrics)
            path = plot_view(study, report, plots_dir / f"{key}.png")
            if path is not None:
                out[key] = path
        if study.verification is not None:
            from ..verify.report import draw_verification

            out.update(draw_verification(study.verification, plots_dir, prefix))
    path = plot_hypervolume(report, plots_dir / "hypervolume.png")
    if path is not None:
        out["hypervolume"] = path
    if several:
        path = plot_fronts(report, plots_dir / "fronts.png")
        if path is not None:
            out["fronts"] = path
    return out


def view_key(metrics: list[str]) -> str:
    """The figure name of a front in two picked metrics: `pareto-fd-train_throughput_normalized`."""
    return "pareto-" + "-".join(metrics)


def plot_pareto(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """All trials as points, the front highlighted (and joined, for two objectives), the knee
    marked; infeasible and failed trials apart. One objective: value against trial number."""
    return _plot_front(study.name, study.input.df, study.completed, study.feasible, study.front, study.knee,
                       report.objectives, report.directions, path, study.baselines)


def plot_view(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """`plot_pareto` in the two metrics the user picked (`study.view`): their front and knee."""
    view = study.view
    if view is None:
        return None
    return _plot_front(study.name, study.input.df, view.completed, view.feasible, view.front, view.knee,
                       view.metrics, view.directions, path)


def _plot_front(name: str, df: pd.DataFrame, completed: pd.DataFrame, feasible: pd.DataFrame, front: pd.DataFrame,
                knee: pd.Series | None, objectives: list[str], directions: list[str], path: Path,
                baselines: list = ()) -> Path | None:
    if df.empty or completed.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    ycol = objectives[0]
    xcol = "number" if len(objectives) == 1 else objectives[1]
    xlabel = "trial number" if len(objectives) == 1 else axis_label(xcol, directions[1])
    ylabel = axis_label(ycol, directions[0])
    others = feasible.drop(index=front.index)
    if len(others):
        label = "completed" if len(objectives) == 1 else "completed, dominated"
        ax.scatter(others[xcol], others[ycol], s=28, color="#7f9fbf", alpha=0.8, label=f"{label} ({len(others)})")
    infeasible = completed.drop(index=feasible.index)
    if len(infeasible):
        ax.scatter(infeasible[xcol], infeasible[ycol], s=36, marker="x", color="#ff7f0e",
                   label=f"infeasible: violates a constraint ({len(infeasible)})")
    failed = df[df["state"].isin(["FAIL", "PRUNED"])]
    plotted = failed[list(dict.fromkeys([xcol, ycol]))].notna().all(axis=1) if len(failed) else pd.Series(dtype=bool)
    if len(failed) and plotted.any():
        shown = failed[plotted]
        ax.scatter(shown[xcol], shown[ycol], s=36, marker="v", color="#555555", label=f"failed or pruned ({len(shown)})")
    unplotted = len(failed) - int(plotted.sum()) if len(failed) else 0
    if unplotted:
        ax.plot([], [], " ", label=f"failed, no values: {unplotted} (not shown)")
    if len(objectives) == 2 and len(front) > 1:
        joined = front.sort_values(objectives[1])
        ax.plot(joined[objectives[1]], joined[ycol], color="#d62728", lw=1.5, zorder=2)
    label = "Pareto front" if len(objectives) > 1 else "best so far"
    if len(objectives) == 1:
        best = feasible.sort_values("number")[ycol]
        best = best.cummin() if directions[0] == "minimize" else best.cummax()
        ax.plot(feasible.sort_values("number")["number"], best, color="#d62728", lw=1.5, label=label,
                drawstyle="steps-post")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.scatter(front[xcol], front[ycol], s=60, color="#d62728", edgecolor="black", lw=0.6, zorder=3,
                   label=f"{label} ({len(front)})" + ("" if len(objectives) == 2 else f" over all {len(objectives)} objectives"))
        for _, row in front.iterrows():
            ax.annotate(f"#{int(row['number'])}", (row[xcol], row[ycol]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8, color="#8b0000")
    if knee is not None:
        ax.scatter([knee[xcol]], [knee[ycol]], s=260, marker="*", color="gold", edgecolor="black",
                   lw=0.8, zorder=4, label=f"{'knee' if len(objectives) > 1 else 'best'}: trial #{int(knee['number'])}")
    drawn = [b for b in baselines if b.state == "COMPLETE" and len(objectives) > 1
             and all(b.values.get(o) == b.values.get(o) for o in objectives[:2])]
    if drawn:  # hand-designed networks (study.baselines), trained by the same protocol
        ax.scatter([b.values[xcol] for b in drawn], [b.values[ycol] for b in drawn], s=70, marker="D", color="#2ca02c",
                   edgecolor="black", lw=0.8, zorder=4, label=f"baseline ({len(drawn)})")
        for b in drawn:
            ax.annotate(b.label, (b.values[xcol], b.values[ycol]), textcoords="offset points", xytext=(6, -10),
                        fontsize=8, color="#1a5e1a")
    if len(objectives) > 1 and _log_x(ax, pd.concat([completed[objectives[1]],
                                                      pd.Series([b.values[xcol] for b in drawn], dtype=float)])):
        xlabel += " (log scale)"
    total = len(df)
    ax.set_title(f"{name}: {objectives[0]}" + (f" vs {objectives[1]}" if len(objectives) > 1 else "")
                 + f" ({total} trials)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    return save_figure(fig, path)


def plot_hypervolume(report: Report, path: Path) -> Path | None:
    """Normalized hypervolume of the front of trials 0..n against n, one line per study."""
    if report.scale is None or all(s.hv_history.empty for s in report.studies):
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, study in enumerate(report.studies):
        h = study.hv_history
        if h.empty:
            continue
        ax.step(h["number"], h["hypervolume"], where="post", color=_COLORS[i % len(_COLORS)], lw=1.8,
                label=f"{study.name} (final {study.hypervolume:.3f})")
    ref = ", ".join(f"{o} {_fmt(v)}" for o, v in zip(report.objectives, report.scale.reference_values))
    ax.set_title(f"Hypervolume of the Pareto front over trials\nreference point: {ref}", fontsize=10)
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"hypervolume (normalized; whole box = {np.prod(report.scale.reference):.2f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_importance(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """Horizontal bars: each parameter's importance for each objective (and the front)."""
    imps = study.importances
    if imps is None or imps.table.empty:
        return None
    table = imps.table.iloc[::-1]  # most important at the top
    plt = pyplot()
    n = len(table.columns)
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.19 * len(table) * n))
    height = 0.8 / n
    y = np.arange(len(table))
    for j, column in enumerate(table.columns):
        label = "reaching the Pareto front" if column == "front" else column
        # The first objective's bar on top within each parameter's group.
        ax.barh(y + ((n - 1) / 2 - j) * height, table[column], height=height, color=_COLORS[j % len(_COLORS)], label=label)
    ax.set_yticks(y, table.index)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"importance ({imps.evaluator}; each colour sums to 1 over the fields)")
    ax.set_title(f"{study.name}: which searched fields mattered ({imps.trials} completed trials)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="importance for")
    ax.grid(axis="y", visible=False)
    return save_figure(fig, path)


def plot_buckets(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """The front's validation loss per noise bucket (low noise on the left), log scale."""
    buckets = study.buckets
    if buckets.empty or len(buckets.columns) < 2:
        return None
    from matplotlib.ticker import FuncFormatter

    cols = [c for c in buckets.columns if c != "number"]
    labels = [f"t∈[{lo},{hi})" for lo, hi in study.bucket_ranges] if len(study.bucket_ranges) == len(cols) else cols
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    knee = int(study.knee["number"]) if study.knee is not None else None
    x = np.arange(len(cols))
    for i, (_, row) in enumerate(buckets.iterrows()):
        number = int(row["number"])
        is_knee = number == knee
        ax.plot(x, row[cols].to_numpy(dtype=float), marker="o", lw=2.4 if is_knee else 1.2,
                color="black" if is_knee else _COLORS[i % len(_COLORS)],
                label=f"trial #{number}" + (" (knee)" if is_knee else ""), zorder=3 if is_knee else 2)
    ax.set_xticks(x, labels, rotation=20 if len(cols) > 5 else 0)
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:.3g}")  # 0.2 rather than 2×10⁻¹
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("timestep bucket (low noise → high noise)")
    ax.set_ylabel("validation loss (ε-MSE, log scale)")
    ax.set_title(f"{study.name}: loss per noise level of the Pareto front's members")
    ax.legend(loc="best", ncol=2 if len(buckets) > 6 else 1)
    return save_figure(fig, path)


def plot_effects(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """For each searched field, each value's median of each objective with its 95% CI."""
    effects = study.effects
    if effects.empty:
        return None
    fields = list(dict.fromkeys(effects["field"]))
    objectives = report.objectives[:2]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.2 * len(objectives), max(2.6, 0.9 + 0.3 * len(effects))),
                             squeeze=False)
    rows = effects.reset_index(drop=True)
    y = -np.arange(len(rows), dtype=float)
    colors = {f: _COLORS[i % len(_COLORS)] for i, f in enumerate(fields)}
    for ax, metric in zip(axes[0], objectives):
        for yi, (_, row) in zip(y, rows.iterrows()):
            mid, lo, hi = row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"]
            ax.errorbar([mid], [yi], xerr=[[mid - lo], [hi - mid]], fmt="o", ms=5, capsize=3, color=colors[row["field"]])
        ax.set_xlabel(f"median {axis_label(metric)}")
        ax.grid(axis="y", visible=False)
    labels = [f"{f} = {v}  (n={n})" for f, v, n in zip(rows["field"], rows["value"], rows["n"])]
    axes[0][0].set_yticks(y, labels, fontsize=8)
    for ax in axes[0][1:]:
        ax.set_yticks(y, [""] * len(y))
    fig.suptitle(f"{study.name}: marginal effect of each searched field (median, bootstrap 95% CI)", fontsize=11)
    return save_figure(fig, path)


def plot_rungs(study: StudyAnalysis, report: Report, path: Path) -> Path | None:
    """Validation loss against training step for every trial that trained: completed ones to
    their full budget, stopped ones ending with a cross where they stopped."""
    usage = study.compute
    if usage is None or usage.curves.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for number, curve in usage.curves.groupby("number"):
        curve = curve.sort_values("step")
        stopped = curve["state"].iloc[0] != "COMPLETE"
        ax.plot(curve["step"], curve["val_loss"], color="#999999" if stopped else "#1f77b4", lw=0.9,
                alpha=0.6 if stopped else 0.9, zorder=1 if stopped else 2)
        if stopped:
            ax.scatter(curve["step"].iloc[-1:], curve["val_loss"].iloc[-1:], marker="x", s=24, color="#d62728", zorder=3)
    for step in usage.per_rung["step"]:
        ax.axvline(step, color="#cccccc", lw=0.8, ls="--", zorder=0)
    ax.plot([], [], color="#1f77b4", label="completed")
    ax.plot([], [], color="#999999", label="stopped early")
    ax.scatter([], [], marker="x", color="#d62728", label="where it stopped")
    ax.set_xlabel("training step (dashed: rungs)")
    ax.set_ylabel(axis_label("val_loss", "minimize"))
    ax.set_title(f"{study.name}: rung losses ({usage.stopped} of {usage.trials} trials stopped, "
                 f"{usage.saved_fraction:.0%} of the steps saved)")
    ax.legend(loc="best")
    return save_figure(fig, path)


def plot_fronts(report: Report, path: Path) -> Path | None:
    """Every study's front on one plot (first two objectives)."""
    if len(report.objectives) < 2:
        return None
    y, x = report.objectives[0], report.objectives[1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for i, study in enumerate(report.studies):
        color = _COLORS[i % len(_COLORS)]
        ax.scatter(study.feasible[x], study.feasible[y], s=14, color=color, alpha=0.25)
        front = study.front.sort_values(x)
        ax.plot(front[x], front[y], marker="o", color=color, lw=1.6,
                label=f"{study.name}: {len(front)} on the front, hypervolume {study.hypervolume:.3f}")
    log = _log_x(ax, pd.concat([s.completed[x] for s in report.studies]))
    ax.set_xlabel(axis_label(x, report.directions[1]) + (" (log scale)" if log else ""))
    ax.set_ylabel(axis_label(y, report.directions[0]))
    ax.set_title("Pareto fronts compared (faint points: all completed trials)")
    ax.legend(loc="best")
    return save_figure(fig, path)


def _log_x(ax, values: pd.Series) -> bool:
    """A log x axis when the values are positive and span more than 30×: throughputs often do."""
    xs = values.to_numpy(dtype=float)
    xs = xs[np.isfinite(xs)]
    if not len(xs) or xs.min() <= 0 or xs.max() / xs.min() <= 30:
        return False
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    return True


def _plain_log_ticks(axis) -> None:
    """Label a log axis 1, 2, 5, 10, 20, 50, ... rather than 10⁰, 10¹."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        lead = round(v / 10 ** np.floor(np.log10(v))) if v > 0 else 0
        return f"{v:g}" if lead in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"

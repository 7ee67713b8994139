"""`archsearch report`: analyze studies, draw the figures, write report.md, report.html and
pareto.csv, and print a summary.

    report, files = make_report(["results/quickstart"])               # files in results/quickstart/
    report, files = make_report(storage="postgresql://...", study="s1", out="results/s1")
    report, files = make_report(["results/a", "results/b"])           # a comparison, in results/a/
    report, files = make_report(["results/q"], front=["fd", "train_throughput_normalized"])  # and a front in these two

Files (in `out`, by default the first study's folder):
    report.md       GitHub-readable, images linked from plots/
    report.html     one self-contained file (CSS inline, images embedded)
    pareto.csv      the front's rows, the columns of trials.csv (with several studies, a leading
                    `study` column and every study's front)
    plots/*.png     pareto, hypervolume, importance, effects, buckets (prefixed by the study name
                    when there are several), fronts (several studies), pareto-<y>-<x> (`front`)
and in each study folder, for every front member with saved weights (trials/<n>/checkpoint.pt),
    trials/<n>/samples.png   a grid of its samples, one sampler for all (archsearch.report.samples),
                             drawn on the CPU and redrawn only when its checkpoint or the sampler
                             changes (trials/<n>/samples.json); `samples=False` skips them
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from rich.console import Console

from ..errors import ConfigError, ConfigErrors
from ..io import atomic_write, atomic_write_text
from .analysis import Report, StudyInput, analyze, load_study_input, read_space
from .console import format_metric
from .document import to_html, to_markdown
from .plots import draw_all
from .samples import SampleGrids, draw_grids, summary_line
from .sections import describe_reference, report_blocks
from .tables import Column, TextTable, show

__all__ = ["ReportFiles", "make_report", "write_report", "print_summary", "load_inputs"]


@dataclass
class ReportFiles:
    out_dir: Path
    markdown: Path
    html: Path
    pareto_csv: Path
    plots: dict[str, Path]
    samples: dict[str, SampleGrids] = field(default_factory=dict)  # by study: the front's grids as drawn


def load_inputs(study_dirs: list[Path] | None = None, storage: str | None = None, study: str | None = None,
                out: Path | None = None) -> list[StudyInput]:
    """The studies named on the command line: folders, or one study of a storage URL."""
    study_dirs = list(study_dirs or [])
    if storage is not None:
        if study_dirs:
            raise ConfigErrors([ConfigError("--storage", "give study folders or --storage URL --study NAME, not both")])
        item = load_study_input(storage=storage, study=study, folder=out)  # open_study picks a storage's only study
        if out is None:
            item.folder = Path("results") / item.name
            item.space = read_space(item.folder)
        return [item]
    if not study_dirs:
        raise ConfigErrors([ConfigError("STUDY_DIR", "give at least one study folder (results/<name>), or --storage URL --study NAME")])
    errors = [ConfigError(str(d), "no such folder") for d in study_dirs if not Path(d).is_dir()]
    if errors:
        raise ConfigErrors(errors)
    if len(set(map(str, study_dirs))) != len(study_dirs):
        raise ConfigErrors([ConfigError("STUDY_DIR", "the same study folder is given twice")])
    inputs = [load_study_input(d, study=study) for d in study_dirs]
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        # Plot files and tables are named by study; two studies of the same name would collide.
        for item, folder in zip(inputs, study_dirs):
            item.name = f"{Path(folder).parent.name}-{item.name}" if Path(folder).parent.name else item.name
    return inputs


def make_report(study_dirs: list[Path] | None = None, storage: str | None = None, study: str | None = None,
                out: Path | None = None, importances: bool = True, samples: bool = True,
                sample_device: str = "cpu", front: list[str] | None = None) -> tuple[Report, ReportFiles]:
    """Analyze the studies and write the report files into `out` (see the module docstring);
    `front`: two metrics to draw each study's front in as well (analysis.front_metrics)."""
    inputs = load_inputs(study_dirs, storage, study, out)
    out_dir = Path(out) if out is not None else (Path(study_dirs[0]) if study_dirs else Path("results") / inputs[0].name)
    report = analyze(inputs, importances=importances, front=front)
    return report, write_report(report, out_dir, samples=samples, sample_device=sample_device)


def write_report(report: Report, out_dir: Path, samples: bool = True, sample_device: str = "cpu") -> ReportFiles:
    """Draw the figures and the front's sample grids (on `sample_device`), and write every
    report file atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = draw_all(report, out_dir / "plots")
    grids = {study.name: draw_grids(replace(study.samples, device=sample_device))
             for study in report.studies if samples and study.samples is not None}
    blocks = report_blocks(report, figures, out_dir, grids)
    title = "archsearch report: " + ", ".join(s.name for s in report.studies)
    markdown = atomic_write_text(out_dir / "report.md", to_markdown(blocks, out_dir))
    html = atomic_write_text(out_dir / "report.html", to_html(blocks, title))
    front = _pareto_rows(report)
    pareto_csv = atomic_write(out_dir / "pareto.csv", lambda path: front.to_csv(path, index=False))
    return ReportFiles(out_dir, markdown, html, pareto_csv, figures, grids)


def _pareto_rows(report: Report) -> pd.DataFrame:
    if len(report.studies) == 1:
        study = report.studies[0]
        return study.front if len(study.front) else study.input.df.iloc[0:0]
    frames = [s.front.assign(study=s.name) for s in report.studies]
    frames = [f[["study", *[c for c in f.columns if c != "study"]]] for f in frames]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def print_summary(report: Report, files: ReportFiles, console: Console) -> None:
    """Trials by state, each study's front, knee, hypervolume and top fields; where the files are."""
    from .live import front_table

    for study in report.studies:
        counts = study.counts
        states = ", ".join(f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING") if counts.get(s))
        extra = "".join(f", {counts[k]} {label}" for k, label in (("infeasible", "infeasible"), ("reused", "reused")) if counts.get(k))
        console.print(f"[bold]{study.name}[/bold]: {len(study.input.df)} trials ({states or 'none finished'}{extra})")
        if len(study.front):
            show(console, front_table(study.front, report.objectives, title=f"Pareto front of {study.name} ({len(study.front)} trials)"))
        else:
            console.print("no completed, feasible trial: no Pareto front yet")
        if study.knee is not None:
            values = ", ".join(f"{o} {format_metric(o, float(study.knee[o]))}" for o in report.objectives)
            console.print(f"knee: trial #{int(study.knee['number'])} ({values})")
        view = study.view
        if view is not None and len(view.front):
            pair = " and ".join(view.metrics)
            show(console, front_table(view.front, view.metrics, title=f"Pareto front of {study.name} in {pair} "
                                                                      f"({len(view.front)} trials)"))
            if view.knee is not None:
                values = ", ".join(f"{m} {format_metric(m, float(view.knee[m]))}" for m in view.metrics)
                console.print(f"knee in {pair}: trial #{int(view.knee['number'])} ({values})")
        elif view is not None:
            console.print(f"no completed, feasible trial measured both {' and '.join(view.metrics)}: no front in them")
        if report.scale is not None:
            console.print(f"hypervolume: {study.hypervolume:.4f}")
        if study.verification is not None:
            console.print(f"retrained longer: {study.verification.verdict}", highlight=False)
        line = summary_line(files.samples.get(study.name))
        if line:
            console.print(line, highlight=False)
        imps = study.importances
        if imps is not None:
            if imps.table.empty:
                console.print(f"importance: {imps.note}", style="dim")
            else:
                table = TextTable("most important fields", [Column("objective", priority=2, justify="left"),
                                                            Column("fields (importance)", priority=1, justify="left", wrap=True)])
                for column in imps.table.columns:
                    label = "reaching the front" if column == "front" else column
                    table.add_row(label, ", ".join(f"{n} {v:.2f}" for n, v in imps.top(column)))
                show(console, table)
        console.print()
    if report.scale is not None:
        console.print(f"hypervolume reference point: {describe_reference(report)}", style="dim")
    if len(report.studies) > 1:
        table = TextTable("hypervolumes (same reference point)", [
            Column("study", priority=3, justify="left"), Column("on the front", priority=1), Column("hypervolume", priority=2)])
        for study in report.studies:
            table.add_row(study.name, str(len(study.front)), f"{study.hypervolume:.4f}")
        show(console, table)
    console.print(f"wrote {files.html}, {files.markdown.name}, {files.pareto_csv.name} and "
                  f"{len(files.plots)} plots in {files.out_dir / 'plots'}/")

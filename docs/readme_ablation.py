"""Regenerate an ablation's block of the README: its table and its forest plot.

    python docs/readme_ablation.py                          # the seed ablation afresh (~7 minutes on 2 CPU cores)
    python docs/readme_ablation.py --results-dir results    # reuse results/seed_design_choices/, train nothing
    python docs/readme_ablation.py --ablation search_spaces/ablations/modern_unet.yaml \
        --marker modern-ablation --plot docs/modern_unet_forest.png   # the modern-U-Net ablation

A fresh run is `archsearch ablate search_spaces/ablations/seed_design_choices.yaml --results-dir
<a temporary folder>`. The table is rendered by the function that writes the study's ablation.md
(`archsearch.ablation.report.comparison_markdown_table`) and replaces everything between the
`<!-- MARKER:begin -->` and `<!-- MARKER:end -->` lines of README.md (`--marker`, default
`ablation`); the study's plots/forest.png is copied to `--plot`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
ABLATION = ROOT / "search_spaces" / "ablations" / "seed_design_choices.yaml"
MARKER = "ablation"


def markers(name: str = MARKER) -> tuple[str, str]:
    """The README lines that enclose the block named `name`."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


BEGIN, END = markers()


def run_fresh(ablation: Path, results_dir: Path) -> None:
    """`archsearch ablate FILE --results-dir DIR`, in a child process that prints its progress."""
    command = [sys.executable, "-m", "archsearch.cli", "ablate", str(ablation), "--results-dir", str(results_dir)]
    subprocess.run(command, check=True)


def render(ablation: Path, results_dir: Path, plot_link: str) -> tuple[str, Path]:
    """The README's block for the ablation stored under `results_dir`, and its forest plot."""
    from archsearch.ablation.report import comparison_markdown_table
    from archsearch.ablation.runner import ablate
    from archsearch.schema.ablation import load_ablation

    spec = load_ablation(ablation)
    shown = ablation.resolve().relative_to(ROOT) if ablation.resolve().is_relative_to(ROOT) else ablation
    report = ablate(spec, results_dir, train=False)  # reads the storage, rewrites the study's report files
    trials = pd.read_csv(report.study_dir / "trials.csv", parse_dates=["datetime_start", "datetime_complete"])
    minutes = (trials["datetime_complete"].max() - trials["datetime_start"].min()).total_seconds() / 60
    lines = [
        f"(`archsearch ablate {shown.as_posix()}`: {len(trials)} trainings, {minutes:.1f} minutes of wall time.)",
        "",
        comparison_markdown_table(report.comparisons),
        "",
        f"![forest plot of the {spec.study.name} ablation]({plot_link})",
    ]
    return "\n".join(lines), report.study_dir / "plots" / "forest.png"


def replace_block(text: str, block: str, name: str = MARKER) -> str:
    """`text` with the lines between the markers of `name` replaced by `block`."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"the README needs one {begin} line followed by one {end} line")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, help="reuse the ablation stored here instead of running it afresh")
    parser.add_argument("--ablation", type=Path, default=ABLATION, help="the ablation file (default: %(default)s)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "seed_ablation_forest.png")
    parser.add_argument("--marker", default=MARKER, help="the README block to rewrite: <!-- MARKER:begin --> (default: %(default)s)")
    args = parser.parse_args(argv)

    link = Path(os.path.relpath(args.plot.resolve(), args.readme.resolve().parent)).as_posix()
    with tempfile.TemporaryDirectory(prefix="readme-ablation-") as tmp:
        results_dir = args.results_dir
        if results_dir is None:
            results_dir = Path(tmp)
            run_fresh(args.ablation, results_dir)
        block, forest = render(args.ablation, results_dir, link)
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(forest, args.plot)
    args.readme.write_text(replace_block(args.readme.read_text(), block, args.marker))
    print(f"wrote {args.readme} (between {' and '.join(markers(args.marker))}) and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

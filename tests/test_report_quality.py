"""Sample quality in `archsearch report` and `archsearch results`: a real tiny study on
[fd, train_throughput_normalized] (8x8 digits, a few steps, 20 samples by DDIM 5 steps: about ten
seconds), its quality columns and protocol, its front in those two, and a front in any two
recorded metrics the user picks (`--front`)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.metrics import METRICS, QUALITY_METRICS
from archsearch.report.analysis import FRONT_METRICS, analyze, front_metrics, load_study_input
from archsearch.report.console import results_table
from archsearch.results import load_results

from test_report_cli import make_study
from test_study import DISTINCT, tiny

runner = CliRunner()
QUALITY_COLUMNS = [*QUALITY_METRICS, "quality_seconds"]
PICKED = ["val_loss", "train_throughput_normalized"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> str:
    """A study whose objectives are sample quality and the load-normalized speed."""
    root = tmp_path_factory.mktemp("quality")
    space = tiny(**DISTINCT, study={"name": "q", "trials": 3},
                 eval={"quality": {"num_samples": 20, "batch_size": 20, "sampler": {"kind": "ddim", "steps": 5},
                                   "kid_subsets": 5, "kid_subset_size": 10, "cache_dir": str(root / "cache")}},
                 objectives=[{"metric": "fd", "direction": "minimize"},
                             {"metric": "train_throughput_normalized", "direction": "maximize"}])
    path = root / "q.yaml"
    path.write_text(yaml.safe_dump(space))
    result = invoke("run", path, "--results-dir", root / "results")
    assert result.exit_code == 0, result.output
    return str(root / "results" / "q")


def non_dominated(df: pd.DataFrame, metrics: list[str]) -> set[int]:
    """The Pareto front by the definition, pair by pair (directions from the registry)."""
    signs = [1 if METRICS[m].direction == "minimize" else -1 for m in metrics]
    rows = [(int(r["number"]), [s * float(r[m]) for s, m in zip(signs, metrics)]) for _, r in df.iterrows()]
    return {n for n, a in rows
            if not any(all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b)) for _, b in rows)}


def completed(study: str) -> pd.DataFrame:
    """The study's completed trials that are not reused duplicates: the front's candidates."""
    df = load_results(study)
    done = df[df["state"] == "COMPLETE"]
    return done[done["reused_from"].isna()] if "reused_from" in done.columns else done


def md_section(markdown: str, heading: str) -> str:
    return markdown.split(heading, 1)[1].split("\n## ", 1)[0]


def trials_in(section: str) -> set[int]:
    return {int(n) for n in re.findall(r"^\| #(\d+)", section, flags=re.MULTILINE)}


def test_results_show_the_quality_columns_a_study_measured(study):
    result = invoke("results", study)
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1]
    assert all(c in header for c in QUALITY_COLUMNS), header
    df = load_results(study)
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == 3 and done["fd"].gt(0).all() and done["quality_seconds"].gt(0).all()
    assert done[["sample_precision", "sample_recall"]].stack().between(0, 1).all()


def test_a_study_without_quality_has_no_quality_columns(tmp_path):
    df = load_results(make_study(tmp_path / "plain", "plain"))
    assert not {c.name for c in results_table(df).columns} & set(QUALITY_COLUMNS)


def test_the_report_shows_the_front_in_fd_and_speed_with_the_quality_and_how_it_was_measured(study):
    result = invoke("report", study, "--no-samples")
    assert result.exit_code == 0, result.output
    summary = result.output.split("Pareto front of q", 1)[1].splitlines()[1]  # the front table's header
    names = [word for word in summary.split() if not word.startswith("(")]  # units sit in parentheses
    assert names[:3] == ["trial", "fd", "train_throughput_normalized"]
    assert all(c in summary for c in QUALITY_COLUMNS[1:]), summary

    text = (Path(study) / "report.md").read_text()
    front = md_section(text, "## Pareto front\n")
    assert "plots/pareto.png" in front
    header = next(line for line in front.splitlines() if line.startswith("| trial"))
    assert header.startswith("| trial | fd | train_throughput_normalized | kid | sample_precision | sample_recall | "
                             "quality_seconds |")
    done = completed(study)
    assert trials_in(front) == non_dominated(done, ["fd", "train_throughput_normalized"])
    protocol = md_section(text, "## How these numbers were measured")
    line = next(line for line in protocol.splitlines() if "sample quality" in line)
    assert "**20 samples** drawn with DDIM (steps 5, η 0)" in line
    assert "`digits` feature network" in line and "1,617 real images of the train split" in line
    assert "`quality_seconds`" in line and f"{len(done)} trials" in line
    noise = next(line for line in protocol.splitlines() if "fd's sampling noise" in line)
    sd = float(done["fd_noise"].median())
    assert f"{sd:.4g}" in noise and f"{2.8 * sd:.4g}" in noise and "are a tie" in noise


def test_the_report_draws_the_front_in_two_metrics_the_user_picks(study):
    result = invoke("report", study, "--no-samples", "--front", ",".join(PICKED))
    assert result.exit_code == 0, result.output
    assert "Pareto front of q in val_loss and train_throughput_normalized" in result.output
    assert "knee in val_loss and train_throughput_normalized: trial #" in result.output
    figure = f"plots/pareto-{PICKED[0]}-{PICKED[1]}.png"
    text = (Path(study) / "report.md").read_text()
    section = md_section(text, "## Pareto front in val_loss and train_throughput_normalized")
    assert figure in section and (Path(study) / figure).stat().st_size > 0
    done = completed(study)
    assert trials_in(section) == non_dominated(done, PICKED)
    header = next(line for line in section.splitlines() if line.startswith("| trial"))
    assert header.startswith("| trial | val_loss | train_throughput_normalized | fd |")  # the quality beside them


def test_the_picked_front_is_the_front_in_those_two_alone(tmp_path):
    """On a stored study (no training): a front in params and val_loss, which are not its objectives."""
    item = load_study_input(make_study(tmp_path / "tiny", "tiny"))
    report = analyze([item], importances=False, front=["params", "val_loss"])
    view = report.studies[0].view
    done = item.df[item.df["state"] == "COMPLETE"]
    # by hand: #2, #4 lose to #1 and #5, #7 to #3 (same params, higher loss); the objectives' front keeps #5
    assert set(view.front["number"]) == non_dominated(done, ["params", "val_loss"]) == {0, 1, 3}
    assert set(report.studies[0].front["number"]) == {0, 1, 3, 5}
    assert view.directions == ["minimize", "minimize"] and view.knee is not None
    assert analyze([item], importances=False, front=list(item.objectives)).studies[0].view is None  # it is the front


@pytest.mark.parametrize("text,message", [
    ("fd", "'fd' is not two metric names separated by a comma"),
    ("fd,nope", "'nope' is not a metric a front can be drawn in"),
    ("val_loss_buckets,fd", "'val_loss_buckets' is not a metric a front can be drawn in"),  # a vector
    ("fd,fd", "fd is named twice"),
])
def test_a_bad_front_is_one_line_with_the_choices_and_exit_2(tmp_path, text, message):
    folder = make_study(tmp_path / "tiny", "tiny")
    result = invoke("report", folder, "--no-samples", "--front", text)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"--front: {message}") and "choose two of: params, flops" in result.stderr
    assert not (folder / "report.md").exists()


def test_a_front_in_a_metric_no_trial_measured_is_exit_2(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny")
    result = invoke("report", folder, "--no-samples", "--front", "fd,train_throughput")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "--front: no completed trial of tiny measured fd (sample quality: its space's eval.quality); it measured: "
        "params, flops, train_throughput, val_loss, duration_s"]  # duration_s: from the trials' times


def test_every_front_metric_is_a_recorded_number_with_a_direction():
    assert set(QUALITY_COLUMNS) <= set(FRONT_METRICS) and "val_loss_buckets" not in FRONT_METRICS
    assert front_metrics(" fd , train_throughput_normalized ") == ["fd", "train_throughput_normalized"]
    for name in FRONT_METRICS:
        info = METRICS[name]
        assert info.direction and info.recorded and info.table and info.format in ("number", "count")

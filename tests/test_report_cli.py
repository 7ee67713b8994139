"""`archsearch report` on small stored studies built without training (a few seconds)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pandas as pd
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.report.analysis import analyze, load_study_input
from archsearch.report.build import make_report
from archsearch.schema.paths import FORMAT_VERSION, param_name

OBJECTIVES = [{"metric": "val_loss", "direction": "minimize"}, {"metric": "train_throughput", "direction": "maximize"}]
# (width, combine, loss, throughput); front by hand: #0, #1, #3, #5 (#2, #4 lose to #1, #7 to #3);
# knee by hand (normalized over the front): #1 at (0.5, 0.5).
TRIALS = [
    (8, "add", 0.30, 900.0),
    (16, "add", 0.20, 500.0),
    (16, "concat", 0.25, 400.0),
    (32, "concat", 0.10, 100.0),
    (16, "concat", 0.22, 450.0),
    (32, "add", 0.15, 300.0),
    None,  # a failed trial
    (32, "concat", 0.12, 80.0),
]


def make_study(folder: Path, name: str, trials=TRIALS, objectives=OBJECTIVES, version: int = FORMAT_VERSION) -> Path:
    """A study folder as `archsearch run` writes one, its parameters named as format `version` names them."""
    from archsearch.schema.space import space_from_dict
    from archsearch.search.storage import open_storage

    folder.mkdir(parents=True)
    study = optuna.create_study(study_name=name, storage=open_storage(None, folder),
                                directions=[o["direction"] for o in objectives])
    study.set_user_attr("objectives", objectives)
    if version >= 2:
        study.set_user_attr("format_version", version)
    width_name, combine_name = (param_name(f, version) for f in ("architecture.levels.0.width", "architecture.skip.combine"))
    dists = {width_name: optuna.distributions.CategoricalDistribution([8, 16, 32]),
             combine_name: optuna.distributions.CategoricalDistribution(["concat", "add"])}
    for number, spec in enumerate(trials):
        width, combine, loss, speed = spec or (8, "concat", None, None)
        attrs = {"config": {"levels": [{"width": width}, {"width": 32}], "skip": {"combine": combine}},
                 "train": {"steps": 60, "batch_size": 32, "num_timesteps": 1000},
                 "device": "cpu (test)", "torch": "2.x", "precision": "fp32", "threads": 1, "params": 1000 * width}
        params = {width_name: width, combine_name: combine}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if spec is None:
                trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params, distributions=dists,
                                                  user_attrs={**attrs, "fail_reason": "diverged: loss is nan"})
            else:
                buckets = [loss * f for f in (3.0, 1.5, 1.0, 0.6, 0.4)]
                metrics = {"val_loss": loss, "train_throughput": speed, "params": attrs["params"]}
                trial = optuna.trial.create_trial(
                    params=params, distributions=dists, values=[metrics[o["metric"]] for o in objectives],
                    user_attrs={**attrs, "val_loss": loss, "train_throughput": speed, "flops": 5e6 * width,
                                "val_loss_buckets": buckets})
        study.add_trial(trial)
    space = space_from_dict({
        "study": {"name": name}, "data": {"source": "digits", "image_size": 16, "channels": 1},
        "train": {"steps": 60, "batch_size": 32}, "measure": {"warmup_steps": 2, "repeats": 5},
        "eval": {"num_images": 64, "timesteps": 10, "noise_seed": 77},
        "objectives": objectives,
        "architecture": {"levels": [{"width": {"choice": [8, 16, 32]}}, {"width": 32}],
                         "skip": {"combine": {"choice": ["concat", "add"]}}},
    })
    (folder / "space.yaml").write_text(yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    return folder


def test_report_writes_every_file_with_the_hand_computed_front(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny")
    from PIL import Image

    (folder / "trials" / "1").mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "trials" / "1" / "samples.png")  # a front member's sample grid
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert "knee: trial #1" in result.output
    assert "hypervolume" in result.output

    front = pd.read_csv(folder / "pareto.csv")
    assert sorted(front["number"]) == [0, 1, 3, 5]
    assert {"val_loss", "train_throughput", "architecture.skip.combine", "val_loss_t0"} <= set(front.columns)

    for name in ("pareto", "hypervolume", "importance", "effects", "buckets"):
        assert (folder / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = (folder / "report.md").read_text()
    assert "**knee: trial #1**" in md and "#1 ★ knee" in md
    assert "![objectives of every trial, Pareto front and knee](plots/pareto.png)" in md
    # The protocol a reviewer asks about: device, timing, the shared validation noise.
    assert "cpu (test)" in md and "2 untimed warm-up steps, then 5 timed steps" in md
    assert "eval.noise_seed = 77" in md and "the same 64 held-out images" in md
    assert "val_loss = 0.32, train_throughput = -2" in md  # reference: .30+.02, 80-82 (worst + 10% of range)
    # The hypervolume's box, in one sentence of its section.
    section = md.split("## Convergence: hypervolume over trials", 1)[1].split("\n## ", 1)[0]
    assert ("The hypervolume is the volume of the box [0, 1.1]^2 that the front dominates, after each objective is "
            "rescaled to 0 at its best and 1 at its worst value over the completed trials (maximized ones flipped), "
            "with the reference point, the box's far corner, at 1.1 in every objective (val_loss = 0.32, "
            "train_throughput = -2): at most 1.21") in section
    assert "diverged: loss is nan" in md
    # Marginal effects: concat was used by #2, #3, #4, #7 (losses .25 .10 .22 .12, median .17).
    assert "| architecture.skip.combine | concat | 4 | 0.17 [" in md
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "<table>" in html and "plots/" not in html
    assert "![samples of trial 1](trials/1/samples.png)" in md


def test_report_compares_studies_on_one_reference_point(tmp_path):
    a = make_study(tmp_path / "a", "a")
    b = make_study(tmp_path / "b", "b", trials=[(8, "add", 0.05, 1000.0), (16, "add", 0.5, 10.0)])
    out = tmp_path / "cmp"
    report, files = make_report([a, b], out=out, importances=False)  # the CLI path is tested above
    assert [s.name for s in report.studies] == ["a", "b"] and files.out_dir == out
    assert (out / "plots" / "fronts.png").exists() and (out / "plots" / "a-pareto.png").exists()
    front = pd.read_csv(out / "pareto.csv")
    assert front.columns[0] == "study"
    assert sorted(front.loc[front["study"] == "a", "number"]) == [0, 1, 3, 5]
    assert front.loc[front["study"] == "b", "number"].tolist() == [0]
    md = (out / "report.md").read_text()
    assert "## Comparison" in md and "## Study a" in md and "## Study b" in md
    # b's single trial beats every trial of both studies in both objectives: it fills the whole box.
    assert "| b | 2 | 2 | 1 | 1.2100 |" in md


def test_report_rejects_bad_input_with_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "is not a study folder" in result.output
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 2 and "STUDY_DIR" in result.output
    a = make_study(tmp_path / "a", "a")
    other = [{"metric": "val_loss", "direction": "minimize"}, {"metric": "params", "direction": "minimize"}]
    b = make_study(tmp_path / "b", "b", trials=[(8, "add", 0.1, 5.0)], objectives=other)
    result = runner.invoke(app, ["report", str(a), str(b)])
    assert result.exit_code == 2 and "only studies with the same objectives compare" in result.output


def test_report_from_a_storage_url(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny", trials=TRIALS[:3])
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["report", "--storage", f"journal://{folder / 'optuna.journal'}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(out / "pareto.csv")["number"]) == [0, 1]
    md = (out / "report.md").read_text()
    assert "not enough completed trials (3" in md
    assert "No `space.yaml` beside the study" in md  # the protocol is not guessed


def test_results_prints_the_table_in_every_format(tmp_path):
    import io
    import json

    folder = make_study(tmp_path / "tiny", "tiny")
    run = lambda fmt: CliRunner().invoke(app, ["results", str(folder), "--format", fmt])  # noqa: E731
    csv, js, md, table = run("csv"), run("json"), run("md"), run("table")
    assert all(r.exit_code == 0 for r in (csv, js, md, table)), (csv.output, js.output, md.output, table.output)
    df = pd.read_csv(folder / "trials.csv")
    printed = pd.read_csv(io.StringIO(csv.stdout))
    assert list(printed.columns) == list(df.columns) and len(printed) == 8
    assert [row["number"] for row in json.loads(js.stdout)] == list(range(8))
    assert md.stdout.splitlines()[2].startswith("| number | state | val_loss (MSE) | train_throughput (img/s) |")
    assert "| 3 | COMPLETE | 0.1 | 100 |" in md.stdout
    # Not a terminal: plain lines, every column, one line per trial.
    lines = table.stdout.splitlines()
    assert lines[0] == "8 trials" and lines[1].split()[:3] == ["number", "state", "val_loss"]
    assert len(lines) == 2 + 8 and "│" not in table.stdout
    assert CliRunner().invoke(app, ["results", str(folder), "--format", "xml"]).exit_code == 2


def test_regenerate_tables_writes_where_the_command_says(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from archsearch.report.console import print_results
    from archsearch.results import regenerate_tables

    folder = make_study(tmp_path / "tiny", "tiny")
    df, written = regenerate_tables(folder)
    assert written == folder and list(pd.read_csv(folder / "trials.csv")["number"]) == list(df["number"]) == list(range(8))
    assert len(pd.read_parquet(folder / "trials.parquet")) == 8
    df, written = regenerate_tables(folder, out=tmp_path / "copy")
    assert written == tmp_path / "copy" and (written / "trials.csv").exists()
    monkeypatch.chdir(tmp_path)  # a storage URL without --out: results/<study> under the working directory
    _, written = regenerate_tables(storage=f"journal://{folder / 'optuna.journal'}", study="tiny")
    assert written == Path("results") / "tiny" and (tmp_path / "results" / "tiny" / "trials.parquet").exists()

    console = Console(file=io.StringIO())
    print_results(df, "csv", console)  # onto the console it is given
    assert pd.read_csv(io.StringIO(console.file.getvalue())).equals(pd.read_csv(folder / "trials.csv"))


def test_a_version_1_study_reports_as_the_same_study_written_today(tmp_path):
    """Format version 1 named the parameters `levels.0.width`: the importances, effects and the
    front's fields of such a study come out under the field's one name, exactly as today's."""
    old, new = (analyze([load_study_input(make_study(tmp_path / str(v), "s", version=v))]).studies[0] for v in (1, 2))
    assert set(new.importances.table.index) == {"architecture.levels.0.width", "architecture.skip.combine"}
    pd.testing.assert_frame_equal(old.importances.table, new.importances.table)
    pd.testing.assert_frame_equal(old.effects, new.effects)
    assert list(old.input.searched) == list(new.input.searched) == ["architecture.levels.0.width", "architecture.skip.combine"]

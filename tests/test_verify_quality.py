"""`archsearch verify --quality`: the sample-quality figures from constructed tables whose τ is
known, from a verify study made by hand, and end to end on a tiny study whose retrains really
train and measure their samples (digits at 8×8, 30 samples, DDIM 5 steps, a cache under tmp_path)."""

import math
import warnings

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.report.analysis import load_study_input
from archsearch.results import open_study
from archsearch.verify.analysis import quality_agreement, verification_of
from archsearch.verify.report import write_verification
from archsearch.verify.runner import retrain_spaces
from archsearch.verify.selection import FRONT, LONG, Retrain
from test_report_cli import OBJECTIVES, make_study
from test_verify_cli import make_source

runner = CliRunner()


def table(short, long_loss, fd, roles=None, on_front=None, short_metric="val_loss"):
    n = len(short)
    return pd.DataFrame({"trial": range(n), "role": roles or [FRONT] * n, f"short {short_metric}": short,
                         "long val_loss": long_loss, "long fd": fd, "on long quality front": on_front or [None] * n})


def test_a_ranking_that_orders_quality_exactly_or_exactly_backwards():
    loss = [0.1, 0.2, 0.3, 0.4, 0.5]
    same = quality_agreement(table(loss, loss, [10, 20, 30, 40, 50]), "val_loss")
    assert (same.tau.value, same.rho.value, same.tau.interval, same.rho.interval) == (1, 1, (1, 1), (1, 1))
    assert same.tau.format() == "τ = 1 [1, 1]" and same.tau.n == 5
    backwards = quality_agreement(table(loss, loss, [50, 40, 30, 20, 10]), "val_loss")
    assert (backwards.tau.value, backwards.rho.value, backwards.tau.interval) == (-1, -1, (-1, -1))
    assert backwards.loss_tau.value == -1 and backwards.tau.format() == "τ = -1 [-1, -1]"


def test_each_figure_reads_its_own_columns_and_skips_unmeasured_trials():
    # short loss orders 0..4; long loss orders 0,1,2,4,3 (one swap of 10); fd orders 1,0,2,3,4 (another).
    # Against fd: short loss τ = 0.8 (one swap), long loss τ = 0.6 (two). Trial 5 has no fd: left out.
    t = table([1, 2, 3, 4, 5, 6], [1, 2, 3, 5, 4, 6], [20, 10, 30, 40, 50, math.nan],
              roles=[FRONT, FRONT, "dominated", FRONT, "dominated", FRONT], on_front=[True, False, True, True, None, None])
    q = quality_agreement(t, "val_loss", ["fd", "train_throughput"])
    assert q.tau.value == pytest.approx(0.8) and q.loss_tau.value == pytest.approx(0.6)
    assert q.rho.value == pytest.approx(0.9) and q.tau.n == q.loss_tau.n == 5
    assert q.tau.interval[0] <= q.tau.value <= q.tau.interval[1]
    # The front members with an fd: #0 #1 #3; on the front in quality: #0 #2 #3.
    assert (q.kept, q.front_size, sorted(q.long_front)) == (2, 3, [0, 2, 3])
    assert (q.recall, q.precision) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    # A study that searched on fd ranks by its own short-run fd.
    by_fd = quality_agreement(table([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], short_metric="fd"), "fd")
    assert by_fd.short == "fd" and by_fd.tau.value == -1 and by_fd.loss_tau.value == 1


def test_no_figures_without_a_long_run_fd():
    assert quality_agreement(table([1, 2, 3], [1, 2, 3], [math.nan] * 3), "val_loss") is None


# The source of test_verify_analysis (test_report_cli.TRIALS, 60 steps): front #0 (.30, 900/s), #1 (.20, 500),
# #3 (.10, 100), #5 (.15, 300); dominated #2 (.25, 400), #7 (.12, 80). Retrained at 120 steps:
LONG_LOSS = {0: 0.28, 1: 0.16, 3: 0.09, 5: 0.17, 7: 0.08, 2: 0.20}
LONG_FD = {0: 30.0, 1: 20.0, 3: 12.0, 5: 25.0, 7: 10.0, 2: 40.0}
SPEED = {0: 900.0, 1: 500.0, 2: 400.0, 3: 100.0, 5: 300.0, 7: 80.0}


def add_quality_verify_study(folder):
    """`tiny-verify` as `archsearch verify --factor 2 --dominated 2 --quality` records it."""
    from archsearch.search.storage import open_storage

    study = optuna.create_study(study_name="tiny-verify", storage=open_storage(None, folder),
                                directions=[o["direction"] for o in OBJECTIVES])
    items = []
    for number, loss in LONG_LOSS.items():
        ident = {"config_hash": f"c{number}", "settings_hash": f"long{number}"}
        role = "dominated" if number in (2, 7) else FRONT
        items.append({"source_trial": number, "role": role, "budget": LONG, **ident})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(values=[loss, SPEED[number]], user_attrs={
                **ident, "source_trial": number, "budget": LONG, "role": role, "train": {"steps": 120},
                "val_loss": loss, "train_throughput": SPEED[number], "fd": LONG_FD[number], "kid": LONG_FD[number] / 1000}))
    study.set_user_attr("kind", "verify")
    study.set_user_attr("verify_of", "tiny")
    study.set_user_attr("items", items)


def test_the_quality_figures_of_a_verify_study_by_hand(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny")
    add_quality_verify_study(folder)
    item = load_study_input(folder)
    v = verification_of(item.df, item.objectives, item.directions, item.verify)
    q = v.quality
    # Short loss order #3 #7 #5 #1 #2 #0; long fd order #7 #3 #1 #5 #0 #2: three of the 15 pairs swap
    # (#3/#7, #5/#1, #2/#0), τ = 9/15, and six rank differences of ±1, ρ = 1 - 6·6/210. Long loss
    # order #7 #3 #1 #5 #2 #0: one swap (#2/#0), τ = 13/15, ρ = 1 - 6·2/210.
    assert q.short == "val_loss" and q.tau.value == pytest.approx(9 / 15) and q.rho.value == pytest.approx(1 - 36 / 210)
    assert q.loss_tau.value == pytest.approx(13 / 15) and q.loss_rho.value == pytest.approx(1 - 12 / 210)
    assert q.tau.n == 6 and q.tau.interval is not None
    # The front in (long fd, the study's speed): #5 (25, 300/s) falls behind #1 (20, 500/s); #7 (10, 80/s) joins.
    assert q.objectives == ["fd", "train_throughput"] and sorted(q.long_front) == [0, 1, 3, 7]
    assert (q.kept, q.front_size, q.recall, q.precision) == (3, 4, 0.75, 0.75)
    assert table_value(v, 7, "long kid") == 0.01 and table_value(v, 7, "short fd") is None
    assert ("; in sample quality, the 60-step val_loss ranking mostly held against the FD at 120 steps (τ = 0.6 ["
            in v.verdict) and v.verdict.endswith("and 3 of 4 front members stayed on the front in FD")

    files = write_verification(v, folder)
    md = (folder / "verify.md").read_text()
    assert "## Sample quality at the longer budget" in md and (folder / "plots" / "verify-quality.png") in files
    assert "| val_loss at 60 steps and fd at 120 steps | 6 | τ = 0.6 [" in md
    assert "| val_loss at 120 steps and fd at 120 steps | 6 | τ = 0.87 [" in md
    assert "| #5 | front | 0.15 | 0.17 | 3 → 4 | drops | 25 | 0.025 | drops |" in md
    assert "| #7 | dominated | 0.12 | 0.08 | 2 → 1 | joins | 10 | 0.01 | joins |" in md
    assert "recall 75%, precision 75% (4 trials on it)" in md


def table_value(v, trial, column):
    value = v.table.set_index("trial").loc[trial, column]
    return None if isinstance(value, float) and math.isnan(value) else value


def test_retrain_spaces_turn_quality_on_keeping_the_studys_own_settings(tmp_path):
    folder = make_source(tmp_path / "tiny")
    source = yaml.safe_load((folder / "space.yaml").read_text())
    attrs = open_study(folder).get_trials(deepcopy=False)[0].user_attrs
    plan = [Retrain(0, FRONT, LONG, attrs["config"], {**attrs["train"], "steps": 6})]
    assert retrain_spaces(plan, source, "tiny-verify")[(0, LONG)].eval.quality is None
    defaults = retrain_spaces(plan, source, "tiny-verify", quality=True)[(0, LONG)].eval.quality
    assert defaults.num_samples == 1000 and defaults.sampler.steps == 50
    own = {**source, "eval": {**source["eval"], "quality": {"num_samples": 30, "cache_dir": str(tmp_path)}}}
    kept = retrain_spaces(plan, own, "tiny-verify", quality=True)[(0, LONG)].eval.quality
    assert kept.num_samples == 30 and kept.cache_dir == str(tmp_path)


TINY_QUALITY = {"num_samples": 30, "sampler": {"kind": "ddim", "steps": 5}, "batch_size": 30, "kid_subsets": 5,
                "kid_subset_size": 10}


def with_quality_section(folder, cache_dir):
    data = yaml.safe_load((folder / "space.yaml").read_text())
    data["eval"]["quality"] = {**TINY_QUALITY, "cache_dir": str(cache_dir)}
    (folder / "space.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def test_verify_quality_measures_every_retrain_and_prints_tau_against_long_run_fd(tmp_path):
    source = with_quality_section(make_source(tmp_path / "tiny"), tmp_path / "cache")
    result = runner.invoke(app, ["verify", str(source), "--factor", "2", "--dominated", "1", "--rounds", "0", "--quality"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert "val_loss at 3 steps vs fd at 6 steps: τ = " in out and "val_loss at 6 steps vs fd at 6 steps: τ = " in out
    line = out.split("val_loss at 3 steps vs fd at 6 steps: ", 1)[1]
    assert line.startswith(("τ = ", "τ undefined")) and "[" in line.split("ρ")[0] and "front in quality: " in out
    trials = open_study(source, None, "tiny-verify").get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:  # the study's own quality settings, at the long budget
        assert math.isfinite(t.user_attrs["fd"]) and t.user_attrs["train"]["steps"] == 6
        assert t.user_attrs["quality"]["num_samples"] == 30 and t.user_attrs["quality"]["sampler"]["steps"] == 5
    assert pd.read_csv(source / "verify" / "trials.csv")["fd"].notna().all()
    assert list((tmp_path / "cache").iterdir())  # the reference statistics, cached where the section says
    md = (source / "verify.md").read_text()
    assert "| val_loss at 3 steps and fd at 6 steps | 3 | " in md and "fd long" in md
    assert (source / "plots" / "verify-quality.png").exists()


def test_a_study_that_searched_on_fd_ranks_its_short_run_fd(tmp_path):
    """Objectives [fd, train_throughput]: its retrains measure quality without --quality (its space has the
    section), and its own short-run fd is what is ranked against the long-run fd."""
    from archsearch.schema.space import space_from_dict
    from archsearch.search.storage import open_storage
    from archsearch.search.study import create_study

    folder = make_source(tmp_path / "plain")
    data = yaml.safe_load((folder / "space.yaml").read_text())
    data["study"]["name"] = "searched"
    data["objectives"] = [{"metric": "fd", "direction": "minimize"}, {"metric": "train_throughput", "direction": "maximize"}]
    data["eval"]["quality"] = {**TINY_QUALITY, "cache_dir": str(tmp_path / "cache")}
    space = space_from_dict(data)
    target = tmp_path / "searched"
    target.mkdir()
    study = create_study(space, open_storage(None, target))
    for t, fd in zip(open_study(folder).get_trials(deepcopy=False), [30.0, 20.0, 35.0, 25.0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(values=[fd, t.values[1]], user_attrs={**t.user_attrs, "fd": fd}))
    (target / "space.yaml").write_text(yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    result = runner.invoke(app, ["verify", str(target), "--factor", "2", "--dominated", "1", "--rounds", "0"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "fd at 3 steps vs fd at 6 steps: τ = " in out and "in sample quality, the 3-step fd ranking" in out
    assert "val_loss at 6 steps vs fd at 6 steps: τ = " in out

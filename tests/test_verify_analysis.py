"""A verify study against its source, both made by hand in one journal (no training): the table,
τ and ρ, the front at the long budget with its recall and precision, speed ties, the verdict, and
what `archsearch report` and `archsearch results` make of it."""

import math
import shutil
import warnings

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.report.analysis import load_study_input
from archsearch.results import load_results, open_study
from archsearch.verify.analysis import HOLDS, REVERSED, TIED, find_verify_study, verification_of
from archsearch.verify.report import write_verification
from test_report_cli import OBJECTIVES, make_study

runner = CliRunner()

# The source (test_report_cli.TRIALS, 60 steps): front #0 (.30, 900/s), #1 (.20, 500), #3 (.10, 100),
# #5 (.15, 300); dominated #2 (.25, 400), #4 (.22, 450), #7 (.12, 80). Retrained: the front, #7 and #2.
LONG = {0: 0.28, 1: 0.16, 3: 0.09, 5: 0.17, 7: 0.08, 2: 0.20}     # at 120 steps
SEED = {0: 0.31, 1: 0.21, 3: 0.11, 5: 0.14, 7: 0.13, 2: 0.24}     # at 60 steps, the next seed: the short order
SPEED = {0: [450, 460, 470], 1: [480, 500, 520], 3: [90, 100, 110], 5: [290, 330, 510]}  # re-measured, 3 rounds
SOURCE_SPEED = {0: 900.0, 1: 500.0, 2: 400.0, 3: 100.0, 5: 300.0, 7: 80.0}


def add_verify_study(folder, long=LONG, seed=SEED, diverged=()):
    """`tiny-verify` as `archsearch verify --factor 2 --dominated 2 --seeds 2` records it."""
    from archsearch.search.storage import open_storage

    study = optuna.create_study(study_name="tiny-verify", storage=open_storage(None, folder),
                                directions=[o["direction"] for o in OBJECTIVES])
    items = []
    for budget, losses, steps in (("long", long, 120), ("seed", seed, 60)):
        for number, loss in losses.items():
            role = "dominated" if number in (2, 7) else "front"
            ident = {"config_hash": f"c{number}", "settings_hash": f"{budget}{number}"}
            items.append({"source_trial": number, "role": role, "budget": budget, **ident})
            attrs = {**ident, "source_trial": number, "budget": budget, "role": role, "train": {"steps": steps},
                     "train_throughput": SOURCE_SPEED[number]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if budget == "long" and number == 2:  # interrupted once, then run again: the rerun counts
                    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={
                        **attrs, "outcome": "interrupted", "fail_reason": "interrupted"}))
                if budget == "long" and number in diverged:
                    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={
                        **attrs, "outcome": "diverged", "fail_reason": "diverged: loss is nan at step 90"}))
                    continue
                study.add_trial(optuna.trial.create_trial(values=[loss, SOURCE_SPEED[number]],
                                                          user_attrs={**attrs, "val_loss": loss}))
    study.set_user_attr("kind", "verify")
    study.set_user_attr("verify_of", "tiny")
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("items", items)
    study.set_user_attr("remeasure", {"metrics": ["train_throughput"], "rounds": 3, "members": [3, 5, 1, 0],
                                      "device": "cpu (test)",
                                      "values": [[r, n, "train_throughput", v[r]] for n, v in SPEED.items() for r in range(3)]})
    return study


@pytest.fixture
def verified(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny")
    add_verify_study(folder)
    return folder


def _verification(folder):
    item = load_study_input(folder)
    return verification_of(item.df, item.objectives, item.directions, item.verify)


def test_the_verification_computed_by_hand(verified):
    v = _verification(verified)
    table = v.table.set_index("trial")
    assert list(v.table["trial"]) == [0, 1, 3, 5, 7, 2]
    assert table.loc[2, "long val_loss"] == 0.20 and table.loc[2, "long state"] == "complete"  # not the interrupted one
    # Ranks by loss, short: #3 #7 #5 #1 #2 #0; long: #7 #3 #1 #5 #2 #0. Two of the 15 pairs swap:
    # τ = (13 - 2) / 15; rank differences ±1 four times: ρ = 1 - 6·4 / (6·35).
    assert table["short rank"].to_dict() == {0: 6, 1: 4, 3: 1, 5: 3, 7: 2, 2: 5}
    assert table["long rank"].to_dict() == {0: 6, 1: 3, 3: 2, 5: 4, 7: 1, 2: 5}
    assert v.tau.value == pytest.approx(11 / 15) and v.rho.value == pytest.approx(1 - 24 / 210)
    assert v.tau.n == 6 and v.tau.interval[0] <= v.tau.value <= v.tau.interval[1]
    assert v.seed_tau.value == pytest.approx(1.0) and v.seed_rho.value == pytest.approx(1.0)
    # The long-budget front (loss at 120 steps, the study's throughput): #5 (.17, 300/s) falls behind
    # #1 (.16, 500/s); #7 (.08, 80/s) joins. Kept 3 of 4: recall 3/4; precision 3 of the 4 on it.
    assert sorted(v.long_front) == [0, 1, 3, 7]
    assert (v.kept, v.front_size) == (3, 4) and (v.recall, v.precision) == (0.75, 0.75)
    assert (v.short_steps, v.long_steps, v.pending) == ([60], [120], 0)
    assert v.verdict.startswith("the 60-step ranking mostly held at 120 steps (τ = 0.73 [")
    assert "; 3 of 4 front members stayed on the front; another seed at the 60-step budget agrees with τ = 1 [1, 1]" in v.verdict


def test_front_pairs_whose_speed_overlaps_are_tied_within_noise(verified):
    v = _verification(verified)
    speed = v.speed.set_index("trial")
    assert speed.loc[0, ["median", "low", "high", "rounds", "study"]].tolist() == [460, 450, 470, 3, 900]
    # A pair rests on speed when the first has the lower loss: every pair of the front here. #5's range
    # [290, 510] overlaps #1's [480, 520] and #0's [450, 470]; #1's [480, 520] is above #0's [450, 470]
    # throughout, so #1 dominates #0 as re-measured; #3's [90, 110] is below every other.
    verdicts = {(p.better_in_rest, p.edge_in_metric): p.verdict for p in v.pairs.itertuples()}
    assert verdicts == {(3, 5): HOLDS, (3, 1): HOLDS, (3, 0): HOLDS, (5, 1): TIED, (5, 0): TIED, (1, 0): REVERSED}
    assert v.verdict.endswith("; 2 front pairs are tied within noise in speed")


def test_a_diverged_retrain_drops_out_of_the_ranking(tmp_path):
    folder = make_study(tmp_path / "tiny", "tiny")
    add_verify_study(folder, diverged=(5,))
    v = _verification(folder)
    row = v.table.set_index("trial").loc[5]
    assert row["long state"] == "diverged: loss is nan at step 90" and math.isnan(row["long val_loss"])
    assert v.tau.n == 5 and v.front_size == 3 and 5 not in v.long_front


def test_verify_md_and_the_report_section(verified):
    files = write_verification(_verification(verified), verified)
    md = (verified / "verify.md").read_text()
    assert files[0] == verified / "verify.md" and {p.name for p in files[1:]} == {"verify-ranks.png", "verify-front.png"}
    assert "**The 60-step ranking mostly held at 120 steps (τ = 0.73 [" in md
    assert "| 60 steps and 120 steps | 6 | τ = 0.73 [" in md and "| two seeds at 60 steps (noise floor) | 6 | τ = 1 [1, 1] |" in md
    assert "| #5 | front | 0.15 | 0.17 | 3 → 4 | drops |" in md and "| #7 | dominated | 0.12 | 0.08 | 2 → 1 | joins |" in md
    assert "| #0 | train_throughput | 900 | 460 [450, 470] |" in md
    assert "#1 dominates #0 as re-measured" in md and "#1 and #5: tied within noise in train_throughput" in md

    result = runner.invoke(app, ["report", str(verified)])
    assert result.exit_code == 0, result.output
    assert "retrained longer: the 60-step ranking mostly held at 120 steps" in result.output
    report = (verified / "report.md").read_text()
    section = report.split("## Would the ranking hold with longer training? (`archsearch verify`)", 1)[1].split("\n## ", 1)[0]
    assert "### Ranking at the longer budget" in section and "recall 75%, precision 75%" in section
    assert "![short- against long-budget loss, and rank lines](plots/verify-ranks.png)" in section
    for name in ("verify-ranks", "verify-front"):
        assert (verified / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_study_without_a_verify_study_has_no_section(tmp_path):
    folder = make_study(tmp_path / "plain", "plain")
    assert find_verify_study(folder) is None
    assert runner.invoke(app, ["report", str(folder)]).exit_code == 0
    assert "archsearch verify" not in (folder / "report.md").read_text()


def test_results_shows_the_verify_study_and_keeps_the_source_the_default(verified, tmp_path):
    result = runner.invoke(app, ["results", str(verified), "--study", "tiny-verify", "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(verified / "verify" / "trials.csv")  # beside the source's trials.csv, not over it
    assert {"source_trial", "budget", "role"} <= set(table.columns) and len(table) == 13
    assert sorted(table.loc[table["budget"] == "long", "source_trial"]) == [0, 1, 2, 2, 3, 5, 7]
    assert not (verified / "trials.csv").exists()  # the source's table is not the verify study's
    # Without --study the folder's own study is meant, even in a folder renamed since.
    renamed = shutil.copytree(verified, tmp_path / "renamed")
    assert open_study(renamed).study_name == "tiny" and len(load_results(renamed)) == 8
    assert find_verify_study(renamed, name="tiny").study_name == "tiny-verify"

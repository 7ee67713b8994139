"""Early stopping in a real study (`study.stopping: asha`, issue 11): trials stop at rungs for the
reason the rule gives, the records they leave are shared through the storage (other workers'
running trials, a resumed study), the results table shows them, and the display says so.

The rule itself is pinned by tests/test_stopping.py; here each study's decisions are derived
again from the records the trials left, so what is checked is the wiring: which records a trial
is compared with, what its vector holds, and what a stopped trial records. Objectives are
val_loss and params (no timing), so that every decision repeats exactly on the CPU. Real worker
processes and PostgreSQL are in tests/test_workers.py (slow).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re

import optuna
import pandas as pd
import pytest
from rich.console import Console

from archsearch import run_study
from archsearch.report.live import StudyDisplay
from archsearch.results import trials_dataframe
from archsearch.schema.space import space_from_dict
from archsearch.search.engine import run_one_trial
from archsearch.search.rungs import RungRecord, rung_attr, rung_records
from archsearch.search.stopping import should_stop
from archsearch.search.storage import open_storage
from archsearch.search.study import create_study
from archsearch.trial import LazyContext
from test_study import tiny

OBJECTIVES = ["val_loss", "params"]
ASHA = {"kind": "asha", "min_steps": 2, "eta": 2, "min_trials_at_rung": 2}  # rungs at steps 2 and 4 of 8
# Good: the small network, a learning rate that learns in two steps. Dominated at every rung:
# the wider one at a learning rate that hardly moves it.
GOOD = {"architecture.levels.1.width": 8, "architecture.block.activation": "silu", "train.lr": 3e-2}
POOR = {"architecture.levels.1.width": 16, "architecture.block.activation": "silu", "train.lr": 1e-5}


def asha_space(trials: int = 5, objectives=OBJECTIVES, **stopping) -> dict:
    return tiny(study={"trials": trials, "stopping": {**ASHA, **stopping}},
                train={"steps": 8, "lr": {"float": {"low": 1e-5, "high": 3e-2, "log": True}}},
                objectives=[{"metric": m} for m in objectives])


def stored(study_dir):
    from archsearch.results import open_study

    return open_study(study_dir).get_trials(deepcopy=False)


def enqueue(space: dict, results_dir, *params: dict) -> None:
    study = create_study(space_from_dict(space), open_storage(None, results_dir / "tiny"))
    for p in params:
        study.enqueue_trial(p)


def rederive(trials, directions, eta=2, min_trials=2) -> None:
    """Check each trial of a one-process study against the rule, from the records it left:
    trials ran one after the other, so at its rung a trial met the records of every earlier
    trial that got there (failed ones excepted), and it stopped at the first rung that said so."""
    done = []
    for t in sorted(trials, key=lambda t: t.number):
        records = rung_records(t.user_attrs)
        curve = dict((int(s), v) for s, v in t.user_attrs["learning_curve"])
        stopped_at = None
        for k, record in records.items():
            assert record.values == (curve[record.step], t.user_attrs["params"]), (t.number, k)  # the vector
            others = [r for d in done if (r := rung_records(d.user_attrs).get(k)) is not None]
            decision = should_stop(record.values, [r.values for r in others], directions, eta, min_trials,
                                   rung=k, step=record.step)
            if decision.stop:
                stopped_at = (k, decision)
                break
        assert list(records) == list(range(len(records)))  # no rung skipped, none after the stop
        if stopped_at is None:
            assert t.state.name == "COMPLETE" and len(records) == 2, t.number
        else:
            k, decision = stopped_at
            attrs = t.user_attrs
            assert t.state.name == "PRUNED" and len(records) == k + 1, t.number
            assert (attrs["stopped_rung"], attrs["stopped_at_step"], attrs["stop_reason"]) == (k, decision.step, decision.reason)
            assert attrs["steps_trained"] == decision.step and max(curve) == decision.step
            assert attrs["rung_vector"] == list(records[k].values) and attrs["val_loss"] is None
            assert attrs["outcome"] == "pruned"
        if t.state.name != "FAIL":
            done.append(t)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 5-trial study with stopping; its first trial goes on (nobody to compare with)."""
    results = tmp_path_factory.mktemp("asha")
    summary = run_study(space_from_dict(asha_space()), results)
    return summary, stored(summary.study_dir)


def test_trials_stop_at_rungs_for_the_reason_the_rule_gives(study):
    summary, trials = study
    rederive(trials, ["minimize", "minimize"])
    states = [t.state.name for t in trials]
    assert states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1, states  # both happen with this seed
    assert summary.trials == 5 and summary.stopped == states.count("PRUNED")  # stopped trials count as done
    for t in trials:
        if t.state.name == "PRUNED":
            assert re.fullmatch(r"stopped at rung [01] \(step [24]\): position \d of \d at this rung "
                                r"\(keeps the top \d\)", t.user_attrs["stop_reason"])
            assert t.values is None and not t.intermediate_values  # multi-objective: Optuna takes no report


def test_the_table_shows_steps_rung_losses_and_why_a_trial_stopped(study):
    summary, trials = study
    df = pd.read_csv(summary.study_dir / "trials.csv")
    columns = list(df.columns)
    assert columns.index("val_loss_at_2") + 1 == columns.index("val_loss_at_4") < columns.index("config_hash")
    assert columns.index("fail_reason") < columns.index("stopped_rung") < columns.index("stop_reason")
    for t, (_, row) in zip(trials, df.iterrows()):
        curve = dict(t.user_attrs["learning_curve"])
        assert row["state"] == t.state.name and row["steps_trained"] == (8 if t.state.name == "COMPLETE" else max(curve))
        assert row["val_loss_at_2"] == pytest.approx(curve[2])
        assert (row["val_loss_at_4"] == pytest.approx(curve[4])) if 4 in curve else pd.isna(row["val_loss_at_4"])
        if t.state.name == "PRUNED":
            assert row["stop_reason"] == t.user_attrs["stop_reason"] and pd.isna(row["val_loss"])
            assert pd.isna(row["fail_reason"])  # a stop is not a failure
        else:
            assert pd.isna(row["stop_reason"]) and row["val_loss"] == pytest.approx(t.values[0])
    assert set(summary.front["number"]) <= {t.number for t in trials if t.state.name == "COMPLETE"}


def test_the_display_shows_each_stop_as_it_happens(tmp_path):
    enqueue(asha_space(), tmp_path, GOOD, POOR)
    console = Console(file=io.StringIO(), width=200)
    display = StudyDisplay(console, "tiny", 2, OBJECTIVES, ["minimize", "minimize"], enabled=False)
    run_study(space_from_dict(asha_space(trials=2)), tmp_path, view=display)
    out = console.file.getvalue()
    assert "trial 0: complete  [1/2]" in out
    assert "trial 1: pruned (stopped at rung 0 (step 2): position 2 of 2 at this rung (keeps the top 1))  [2/2]" in out
    # A terminal's live display prints the stop above its live area, once; a study's old stops are not news.
    live = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    display = StudyDisplay(live, "tiny", 3, OBJECTIVES, ["minimize", "minimize"])
    trials = stored(tmp_path / "tiny")
    with display:
        display.study_changed(trials, 2, [])
        display.study_changed(trials, 2, [])
    assert "pruned" not in live.file.getvalue()
    display = StudyDisplay(live, "tiny", 3, OBJECTIVES, ["minimize", "minimize"])
    with display:
        display.study_changed(trials[:1], 1, [])
        display.trial_finished(trials[1], trials, 2)
        display.study_changed(trials, 2, [])
    assert live.file.getvalue().count("trial 1: pruned (stopped at rung 0 (step 2)") == 1


def test_a_resumed_study_keeps_its_rung_records_and_judges_by_them(tmp_path):
    enqueue(asha_space(), tmp_path, GOOD)
    run_study(space_from_dict(asha_space(trials=1)), tmp_path)
    (first,) = stored(tmp_path / "tiny")
    assert first.state.name == "COMPLETE" and set(rung_records(first.user_attrs)) == {0, 1}
    enqueue(asha_space(), tmp_path, POOR)
    run_study(space_from_dict(asha_space(trials=2)), tmp_path)  # another run: a fresh storage handle
    kept, resumed = stored(tmp_path / "tiny")
    assert rung_records(kept.user_attrs) == rung_records(first.user_attrs)
    # Only the first run's record is there to stop it: two at the rung, the resumed one second.
    assert resumed.state.name == "PRUNED"
    assert resumed.user_attrs["stop_reason"] == "stopped at rung 0 (step 2): position 2 of 2 at this rung (keeps the top 1)"
    rederive([kept, resumed], ["minimize", "minimize"])


@pytest.mark.parametrize("state, stops", [("RUNNING", True), ("FAIL", False)])
def test_another_workers_running_trial_counts_and_a_failed_one_does_not(tmp_path, state, stops):
    """Two workers, two handles on one journal: worker 0's trial, still running (or failed),
    has reached rung 0 with the best vector there can be; worker 1's trial gets there next."""
    space = space_from_dict(asha_space(trials=2))
    study_dir = tmp_path / "tiny"
    other = create_study(space, open_storage(None, study_dir), worker_index=0)
    elsewhere = other.ask()
    elsewhere.set_user_attr("worker", "another-host:1")
    elsewhere.set_user_attr(rung_attr(0), RungRecord(2, (0.0, 1.0), 0.0).to_attr())
    if state == "FAIL":
        other.tell(elsewhere, state=optuna.trial.TrialState.FAIL)
    study = create_study(space, open_storage(None, study_dir), worker_index=1)
    outcome = run_one_trial(study, study.ask(), space, LazyContext(space.data, space.eval, "cpu"), lambda *a: None,
                            max_retries=0, heartbeat_interval=5.0, study_dir=study_dir)
    if stops:
        assert outcome.state == "pruned" and outcome.attrs["stopped_at_step"] == 2
        assert outcome.reason == "stopped at rung 0 (step 2): position 2 of 2 at this rung (keeps the top 1)"
    else:
        assert outcome.state == "complete" and set(rung_records(outcome.attrs)) == {0, 1}


def test_an_infeasible_trial_is_stopped_though_its_loss_is_better_and_tpe_hears_its_constraints(tmp_path):
    # One rung, at step 4, one objective: there the wide network's loss is below the small one's,
    # so on its loss alone it would go on; its parameters break the constraint, so it stops, and
    # it is told PRUNED with its constraints (TPE ranks it with the infeasible trials).
    wide = {**GOOD, "architecture.levels.1.width": 16}
    space = asha_space(trials=2, objectives=["val_loss"], min_steps=4)
    space["constraints"] = ["params <= 20000"]
    enqueue(space, tmp_path, GOOD, wide)
    run_study(space_from_dict(space), tmp_path)
    small, big = stored(tmp_path / "tiny")
    (small_rung,), (big_rung,) = rung_records(small.user_attrs).values(), rung_records(big.user_attrs).values()
    assert big_rung.values[0] < small_rung.values[0] and small_rung.violation == 0
    excess = big.user_attrs["params"] - 20000
    assert excess > 0 and big_rung.violation == excess
    assert small.state.name == "COMPLETE" and small.constraints == {"params <= 20000": small.user_attrs["params"] - 20000}
    assert big.state.name == "PRUNED" and big.constraints == {"params <= 20000": excess}
    assert big.user_attrs["stop_reason"] == ("stopped at rung 0 (step 4): position 2 of 2 at this rung (keeps the top 1); "
                                             f"it violates its constraints by {excess:g}")


def test_one_objective_reports_the_rung_loss_to_optuna(tmp_path):
    enqueue(asha_space(objectives=["val_loss"]), tmp_path, GOOD, POOR)
    run_study(space_from_dict(asha_space(trials=2, objectives=["val_loss"])), tmp_path)
    good, poor = stored(tmp_path / "tiny")
    assert poor.state.name == "PRUNED" and poor.intermediate_values == {2: rung_records(poor.user_attrs)[0].values[0]}
    assert sorted(good.intermediate_values) == [2, 4]  # TPE ranks pruned trials by step, then this loss


def test_a_trial_pruned_by_optunas_pruner_says_so_too(tmp_path):
    space = tiny(study={"trials": 2, "pruner": {"kind": "median", "n_startup_trials": 1}},
                 train={"steps": 8, "lr": {"float": {"low": 1e-5, "high": 3e-2, "log": True}}},
                 eval={"curve_points": 1}, objectives=[{"metric": "val_loss"}])
    enqueue(space, tmp_path, GOOD, POOR)
    run_study(space_from_dict(space), tmp_path)
    good, poor = stored(tmp_path / "tiny")
    assert good.state.name == "COMPLETE" and poor.state.name == "PRUNED"
    assert (poor.user_attrs["stop_reason"], poor.user_attrs["stopped_at_step"]) == ("pruned by study.pruner (median) at step 4", 4)
    assert not rung_records(poor.user_attrs) and poor.user_attrs["val_loss"] is None


def frozen(number: int, state: str, attrs: dict) -> optuna.trial.FrozenTrial:
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    return optuna.trial.FrozenTrial(
        number=number, state=getattr(optuna.trial.TrialState, state), value=None,
        values=[0.1, 100.0] if state == "COMPLETE" else None, datetime_start=start,
        datetime_complete=start + dt.timedelta(seconds=5), params={}, distributions={}, user_attrs=attrs,
        system_attrs={}, intermediate_values={}, trial_id=number)


def test_rung_columns_come_from_the_records_by_step_and_old_trials_keep_their_steps():
    records = {rung_attr(1): {"step": 60, "values": [0.2, None], "violation": None},
               rung_attr(0): {"step": 20, "values": [0.3, 50.0], "violation": 0.0},
               "rung_note": "a user's own attribute", rung_attr(2): {"values": "not a record"}}
    trials = [frozen(0, "PRUNED", {**records, "stopped_rung": 1, "stopped_at_step": 60, "steps_trained": 60,
                                   "stop_reason": "stopped at rung 1 (step 60): ..."}),
              frozen(1, "COMPLETE", {"steps": 300})]  # recorded before steps_trained had its name
    df = trials_dataframe(trials, ["val_loss", "train_throughput"])
    assert [c for c in df.columns if c.startswith("val_loss_at_")] == ["val_loss_at_20", "val_loss_at_60"]
    assert df["val_loss_at_20"].tolist()[0] == 0.3 and df["val_loss_at_60"].tolist()[0] == 0.2
    assert df["steps_trained"].tolist() == [60, 300] and "steps" not in df.columns
    read = rung_records(trials[0].user_attrs)
    assert list(read) == [0, 1] and read[0] == RungRecord(20, (0.3, 50.0), 0.0)
    assert read[1].values[0] == 0.2 and math.isnan(read[1].values[1]) and read[1].violation == math.inf  # nulls: unmeasured
    assert RungRecord(60, (0.2, math.nan), math.inf).to_attr() == records[rung_attr(1)]
    assert trials_dataframe(trials, ["params"]).filter(like="val_loss_at_").empty  # no val_loss objective, no rungs


def test_a_quality_objective_is_ranked_at_rungs_by_the_rungs_loss_and_measured_at_the_end(tmp_path):
    """fd is not measured at a rung (sampling there would cost more than the training): the
    rung's val_loss stands in for it in the vector, minimized, and completed trials measure it."""
    space = asha_space(trials=3, objectives=["fd", "params"])
    space["eval"] = {**space.get("eval", {}), "quality": {"num_samples": 20, "sampler": {"steps": 3}, "kid_subsets": 2,
                                                          "cache_dir": str(tmp_path / "cache")}}
    run_study(space_from_dict(space), tmp_path)
    trials = stored(tmp_path / "tiny")
    rederive(trials, ["minimize", "minimize"])  # the vector: (the rung's val_loss, params)
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    assert completed and all(t.values[0] == t.user_attrs["fd"] > 0 for t in completed)
    assert all(t.user_attrs.get("fd") is None for t in trials if t.state.name == "PRUNED")

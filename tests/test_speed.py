"""A speed axis that survives load, from the space file to the report: `measure.reference`, the
study's anchor (archsearch.search.speed), the results table's normalized throughput and
under-load flag, the report's protocol lines, the live display's warning, and old studies
without any of it. Timings are never asserted on: the values are written by hand."""

import datetime as dt
import errno
import io

import optuna
import pytest
import yaml
from rich.console import Console

from archsearch import run_study
from archsearch.errors import ConfigErrors
from archsearch.metrics import METRICS, OBJECTIVE_METRICS, TrialMetrics
from archsearch.report.analysis import StudyInput, protocol
from archsearch.report.live import StudyDisplay
from archsearch.report.sections import _speed_items
from archsearch.results import front_of, load_results, open_study, trials_dataframe
from archsearch.schema.ablation import ablation_from_dict
from archsearch.schema.space import space_from_dict
from archsearch.search.objective import settings_hash
from archsearch.search.speed import REFERENCE_ATTR, SpeedAnchor, speed_group
from archsearch.search.study import _check_space
from archsearch.schema.train import TrainConfig
from test_study import TINY, tiny

NORMALIZED = [{"metric": "val_loss"}, {"metric": "train_throughput_normalized"}]


# --- the registry and the schema -------------------------------------------------------------

def test_the_speed_metrics_are_registered_once_with_their_roles():
    assert {"train_throughput_normalized", "train_speed_vs_ref"} <= set(OBJECTIVE_METRICS)
    assert {"ref_throughput", "train_speed_vs_ref", "load_avg", "cpu_count", "gpu_util", "sm_clock_mhz"} <= \
        {n for n, m in METRICS.items() if m.measured}
    assert [n for n, m in METRICS.items() if m.study_relative] == ["train_throughput_normalized", "measured_under_load"]
    assert not METRICS["measured_under_load"].recorded and METRICS["measured_under_load"].format == "flag"
    assert all(METRICS[n].before_training for n in ("train_throughput_normalized", "train_speed_vs_ref"))


@pytest.mark.parametrize("reference, levels", [("auto", 2), ("seed", 3), ({"base": "seed", "levels": [{"width": 8}]}, 1),
                                               ({"levels": [{"width": 8, "blocks": 1}], "block": {"norm": {"groups": 4}}}, 1)])
def test_measure_reference_takes_auto_a_preset_or_a_config(reference, levels):
    from archsearch.schema.measure import reference_architecture

    space = space_from_dict(tiny(measure={"reference": reference}))
    config = reference_architecture(space.measure, 8, 1)
    assert (config.image_size, config.in_channels, len(config.resolved_levels())) == (8, 1, levels)


def test_a_space_without_a_reference_key_gets_auto_and_null_turns_it_off():
    assert space_from_dict(tiny()).measure.reference == "auto"
    assert space_from_dict(tiny(measure={"reference": None})).measure.reference is None


@pytest.mark.parametrize("sections, path, words", [
    ({"measure": {"reference": "tiny"}}, "measure.reference", "unknown reference 'tiny'"),
    ({"measure": {"reference": {"image_size": 16}}}, "measure.reference.image_size", "16 but the data's is 8"),
    ({"measure": {"reference": {"levels": [{"width": 6}], "block": {"norm": {"groups": 4}}}}},
     "measure.reference.block.norm.groups", "does not divide"),
    ({"measure": {"reference": None}, "objectives": NORMALIZED}, "objectives.1.metric", "measure.reference is null"),
    ({"measure": {"reference": None}, "constraints": ["train_speed_vs_ref >= 0.5"]}, "constraints.0", "is null"),
])
def test_a_bad_reference_fails_when_the_file_loads(sections, path, words):
    with pytest.raises(ConfigErrors) as info:
        space_from_dict(tiny(**sections))
    assert any(e.path == path and words in e.message for e in info.value.errors), info.value.lines()


def test_an_ablation_checks_its_reference_too():
    data = {"base": {"levels": [{"width": 8}], "block": {"norm": {"groups": 4}}}, "variants": {"wide": {"levels": [{"width": 16}]}},
            "data": {"source": "digits", "image_size": 8}, "measure": {"reference": {"in_channels": 3}}}
    with pytest.raises(ConfigErrors, match="measure.reference.in_channels"):
        ablation_from_dict(data)


def test_another_reference_is_another_setting():
    # At its default the reference is left out of the identity (tests/test_identity.py pins the
    # hash a study stored before references existed); any other reference times another protocol.
    space, train = space_from_dict(tiny()), TrainConfig(steps=3)
    for other in ("seed", None):
        assert settings_hash(train, space_from_dict(tiny(measure={"reference": other}))) != settings_hash(train, space)


def test_a_study_folder_written_before_references_resumes(tmp_path):
    space = space_from_dict(tiny())
    old = space.model_dump(mode="json")
    del old["measure"]["reference"]
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(old))
    _check_space(space, tmp_path)  # no "holds a study of another space"
    with pytest.raises(ConfigErrors, match="another space"):
        _check_space(space_from_dict(tiny(measure={"reference": "seed"})), tmp_path)


# --- the anchor at record time ---------------------------------------------------------------

def metrics(ref, precision="fp32"):
    return TrialMetrics(ref_throughput=ref, precision=precision)


def test_the_first_reference_speed_of_a_group_becomes_the_studys_anchor():
    study = optuna.create_study()
    assert SpeedAnchor(study, 32)(metrics(100.0)) == 100.0  # the first trial's own
    assert SpeedAnchor(study, 32)(metrics(60.0)) == 100.0   # later ones: the anchor, whatever their own
    assert SpeedAnchor(study, 64)(metrics(180.0)) == 180.0  # another batch size, another group
    assert SpeedAnchor(study, 32)(metrics(90.0, "bf16")) == 90.0
    assert study.user_attrs[REFERENCE_ATTR] == {speed_group(32, "fp32"): 100.0, speed_group(64, "fp32"): 180.0,
                                                speed_group(32, "bf16"): 90.0}
    assert SpeedAnchor(study, 32)(metrics(None)) is None  # timed without a reference


def test_a_storage_that_is_down_gives_the_trial_its_own_speed():
    class Down:
        @property
        def user_attrs(self):
            raise OSError(errno.EIO, "I/O error")

    assert SpeedAnchor(Down(), 32)(metrics(100.0)) is None


# --- the results table -----------------------------------------------------------------------

def frozen(number, ratio=None, ref=None, batch=32, **attrs):
    start = dt.datetime(2026, 1, 1, 12)
    speed = {} if ref is None else {"ref_throughput": ref, "train_speed_vs_ref": ratio, "train_throughput_normalized": 1.0}
    attrs = {"val_loss": 0.1 + number / 100, "train_throughput": 50.0, "precision": "fp32", "train": {"batch_size": batch},
             **speed, **attrs}
    return optuna.trial.FrozenTrial(number=number, state=optuna.trial.TrialState.COMPLETE, value=None,
                                    values=[attrs["val_loss"], attrs["train_throughput"]], datetime_start=start,
                                    datetime_complete=start + dt.timedelta(seconds=3), params={}, distributions={},
                                    user_attrs=attrs, system_attrs={}, intermediate_values={}, trial_id=number)


def test_the_table_normalizes_by_the_median_reference_and_flags_trials_far_from_it():
    trials = [frozen(0, 2.0, 100.0), frozen(1, 1.0, 110.0), frozen(2, 0.5, 70.0), frozen(3, 1.5, 90.0),
              frozen(4, 3.0, 400.0, batch=128),                  # its own group: its own median
              frozen(5, 9.0, 10.0, reused_from=2)]               # a duplicate: no vote in the median
    df = trials_dataframe(trials, ["val_loss", "train_throughput"])
    median = 95.0  # of 100, 110, 70, 90
    assert list(df["train_throughput_normalized"]) == pytest.approx([2 * median, median, 0.5 * median, 1.5 * median, 1200.0, 9 * median])
    # |70 / 95 - 1| = 26% > 25%; |110 / 95 - 1| = 16%; 10 / 95 is a reused record, flagged all the same
    assert list(df["measured_under_load"]) == [False, False, True, False, False, True]
    assert list(df.columns).index("train_throughput_normalized") < list(df.columns).index("measured_under_load")


def test_an_old_study_without_reference_fields_still_tabulates_and_has_a_front():
    trials = [frozen(0), frozen(1, 1.0, 100.0)]  # trial 0 was timed before references existed
    df = trials_dataframe(trials, ["val_loss", "train_throughput"])
    assert df["train_throughput_normalized"].isna().tolist() == [True, False]
    assert df["measured_under_load"].tolist() == [None, False]
    assert len(front_of(df, ["val_loss", "train_throughput"], ["minimize", "maximize"])) >= 1
    speed = protocol(StudyInput("old", trials_dataframe([frozen(0)], ["val_loss"]), ["val_loss"], ["minimize"]))["speed"]
    assert speed["timed"] == 0 and _speed_items(speed, {}) == []  # the report says nothing of references


def test_archsearch_results_shows_the_normalized_speed_of_studies_timed_against_a_reference():
    from archsearch.report.console import results_table

    names = lambda trials: [c.name for c in results_table(trials_dataframe(trials, ["val_loss"])).columns]  # noqa: E731
    assert "train_throughput_normalized" in names([frozen(0, 1.0, 100.0), frozen(1)])
    assert "train_throughput_normalized" not in names([frozen(0), frozen(1)])  # a study from before references


def test_the_report_states_the_medians_the_anchor_and_the_trials_under_load():
    df = trials_dataframe([frozen(0, 2.0, 100.0), frozen(1, 1.0, 110.0), frozen(2, 0.5, 60.0)], ["val_loss"])
    study = optuna.create_study()
    study.set_user_attr(REFERENCE_ATTR, {speed_group(32, "fp32"): 100.0})
    speed = protocol(StudyInput("s", df, ["val_loss"], ["minimize"], study=study))["speed"]
    assert speed == {"timed": 3, "medians": {"batch 32, fp32": 100.0}, "anchors": {"batch 32, fp32": 100.0}, "under_load": [2]}
    text = " ".join(_speed_items(speed, {"reference": "auto"}))
    assert "`measure.reference: auto`" in text and "**measured under load**: 1 trial (#2)" in text
    assert "first trial's reference speed" in text
    calm = dict(speed, under_load=[])
    assert "no trial was measured under load" in " ".join(_speed_items(calm, {}))


# --- the live display ------------------------------------------------------------------------

def test_the_live_display_warns_once_while_the_machine_is_oversubscribed():
    out = io.StringIO()
    display = StudyDisplay(Console(file=out, width=120), "s", 4, ["val_loss"], ["minimize"], enabled=False)
    display.check_load({"load_avg": 1.2, "cpu_count": 2})
    assert display.warning is None and out.getvalue() == ""
    for _ in range(2):
        display.check_load({"load_avg": 6.0, "cpu_count": 2})
    assert out.getvalue().count("machine oversubscribed (load average 6.0 on 2 cores)") == 1
    display.threads, display.running = 2, [(1, "training"), (2, "training")]
    display.check_load({"load_avg": 0.5, "cpu_count": 2})
    assert "4 torch threads on 2 cores" in display.warning


@pytest.mark.parametrize("attrs, counted", [
    ({"threads": 1, "train_threads": 2}, 2),  # timed at fewer threads under load: it trains at its own
    ({"threads": 2}, 2),                      # a trial from before train_threads was recorded
    ({}, None),                               # nothing recorded: no estimate
])
def test_the_live_display_counts_the_threads_a_trial_trained_with(attrs, counted):
    display = StudyDisplay(Console(file=io.StringIO(), width=120), "s", 4, ["val_loss"], ["minimize"], enabled=False)
    trial = optuna.trial.create_trial(values=[0.1], user_attrs={"val_loss": 0.1, **attrs})
    display.trial_finished(trial, [trial], done=1)
    assert display.threads == counted


# --- a whole study ---------------------------------------------------------------------------

def test_a_study_can_optimize_the_normalized_speed(tmp_path):
    data = tiny(objectives=NORMALIZED, train={"lr": {"float": {"low": 1e-3, "high": 1e-2, "log": True}}})
    run_study(space_from_dict(data), tmp_path, trials=3)
    study = open_study(tmp_path / "tiny")
    anchor = study.user_attrs[REFERENCE_ATTR][speed_group(TINY["train"]["batch_size"], "fp32")]
    trials = study.get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:  # Optuna holds ratio × the anchor, fixed for the whole study
        assert t.values[1] == pytest.approx(t.user_attrs["train_speed_vs_ref"] * anchor)
    df = load_results(tmp_path / "tiny")
    factor = df["train_throughput_normalized"] / pd_values(trials)
    assert factor.max() == pytest.approx(factor.min())  # the table rescales every trial alike
    front = front_of(df, ["val_loss", "train_throughput_normalized"], ["minimize", "maximize"])
    assert sorted(front["number"]) == sorted(t.number for t in study.best_trials)


def pd_values(trials):
    import pandas as pd

    return pd.Series([t.values[1] for t in sorted(trials, key=lambda t: t.number)])

"""A whole study (`archsearch.run_study`, `archsearch run`, `archsearch results`): the
results table against the storage, resume without retraining, duplicate reuse, trials that fail
(invalid, raising) without ending the study, constraints, one objective, every sampler."""

import copy
import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import archsearch.trial as trial_module
from archsearch.cli import app
from archsearch.errors import ConfigErrors
from archsearch.results import load_results, open_study
from archsearch.schema.space import space_from_dict
from archsearch import run_study

# Tiny trials (8x8 digits, 8 channels, 3 steps, no optional measurements): well under a second.
TINY = {
    "study": {"name": "tiny", "trials": 2, "sampler": {"kind": "random"}, "device": "cpu", "seed": 0},
    "data": {"source": "digits", "image_size": 8},
    "train": {"steps": 3, "batch_size": 8, "warmup_steps": 0, "log_every": 1},
    "eval": {"num_images": 16, "timesteps": 5, "curve_points": 0},
    "measure": {"warmup_steps": 1, "repeats": 3, "infer": False, "latency": False, "flops": False},
    "architecture": {
        "levels": [{"width": 8, "blocks": 1}, {"width": {"choice": [8, 16]}, "blocks": 1}],
        "block": {"norm": {"groups": 4}, "activation": {"choice": ["silu", "gelu"]}},
        "middle": {"blocks": 1, "attention": False},
        "embedding": {"dim": 8},
    },
}
# A learning rate drawn from a continuous range: no two trials are duplicates.
DISTINCT = {"train": {"lr": {"float": {"low": 1e-3, "high": 1e-2, "log": True}}}}


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny(**sections) -> dict:
    return merged(TINY, sections)


def run(data: dict, results_dir, trials: int | None = None):
    return run_study(space_from_dict(data), results_dir, trials=trials)


@pytest.fixture
def trained(monkeypatch):
    """Counts the trials that really train (calls of run_trial); `fail_on` makes some raise."""
    calls = []
    real = trial_module.run_trial
    fail_on = set()

    def spy(config, *args, **kwargs):
        calls.append(config)
        if len(calls) in fail_on:
            raise RuntimeError("boom")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", spy)
    spy.calls, spy.fail_on = calls, fail_on
    return spy


def storage_trials(study_dir):
    return open_study(study_dir).get_trials(deepcopy=False)


def test_the_table_holds_the_storage_and_can_be_regenerated(tmp_path):
    summary = run(tiny(study={"trials": 3}, **DISTINCT), tmp_path)
    study_dir = tmp_path / "tiny"
    assert summary.study_dir == study_dir and summary.trials == summary.completed == 3
    df = pd.read_csv(study_dir / "trials.csv")
    columns = list(df.columns)
    assert columns[:4] == ["number", "state", "val_loss", "train_throughput_normalized"]  # then the objectives
    for name in ("params", "flops", "duration_s", "config_hash", "fail_reason", "architecture.levels.1.width",
                 "architecture.block.activation", "train.steps", "train.lr", *[f"val_loss_t{i}" for i in range(5)]):
        assert name in columns, name
    assert columns.index("val_loss_t4") < columns.index("config_hash") < columns.index("architecture.levels.1.width")
    assert columns.index("architecture.zero_init") < columns.index("train.batch_size")
    assert not [c for c in columns if c.startswith("arch.")]  # no second spelling of a field
    factors = set()  # the table scales the stored speed ratio by the study's median reference, Optuna by its anchor
    for t, (_, row) in zip(storage_trials(study_dir), df.iterrows()):
        attrs = t.user_attrs
        assert (row["number"], row["state"]) == (t.number, "COMPLETE")
        assert row["val_loss"] == pytest.approx(t.values[0])
        factors.add(round(row["train_throughput_normalized"] / t.values[1], 9))
        assert row["params"] == attrs["params"] and row["config_hash"] == attrs["config_hash"]
        assert row["val_loss_t0"] == pytest.approx(attrs["val_loss_buckets"][0])
        assert row["architecture.levels.1.width"] == t.params["architecture.levels.1.width"]  # one name
        assert row["train.lr"] == pytest.approx(t.params["train.lr"])
        files = study_dir / "trials" / str(t.number)
        assert yaml.safe_load((files / "config.yaml").read_text()) == attrs["config"]
        assert json.loads((files / "metrics.json").read_text())["state"] == "COMPLETE"
    assert len(factors) == 1  # one factor for every trial: the same front as Optuna's
    assert pd.read_parquet(study_dir / "trials.parquet").shape == df.shape
    assert yaml.safe_load((study_dir / "space.yaml").read_text())["study"]["name"] == "tiny"

    # The table derives from the storage: delete it and `archsearch results` writes it again.
    (study_dir / "trials.csv").unlink()
    result = CliRunner().invoke(app, ["results", str(study_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 trials" in result.output
    assert pd.read_csv(study_dir / "trials.csv").equals(df)
    assert load_results(study_dir)[["number", "val_loss"]].equals(df[["number", "val_loss"]])


def test_resume_trains_only_the_missing_trials(tmp_path, trained):
    first = run(tiny(**DISTINCT), tmp_path, trials=2)
    assert first.trials == 2 and len(trained.calls) == 2
    before = [(t.values, t.datetime_complete) for t in storage_trials(first.study_dir)]
    again = run(tiny(**DISTINCT), tmp_path, trials=3)  # the count is the whole study's
    after = storage_trials(first.study_dir)
    assert again.trials == 3 and len(after) == 3 and len(trained.calls) == 3  # one more trained
    assert [(t.values, t.datetime_complete) for t in after][:2] == before  # kept, not retrained
    calls = len(trained.calls)
    run(tiny(**DISTINCT), tmp_path, trials=3)
    assert len(trained.calls) == calls and len(storage_trials(first.study_dir)) == 3  # nothing missing
    assert len(pd.read_csv(first.study_dir / "trials.csv")) == 3


def test_a_resumed_study_does_not_replay_its_first_proposals(tmp_path, trained):
    run(tiny(**DISTINCT), tmp_path, trials=2)
    run(tiny(**DISTINCT), tmp_path, trials=3)
    params = [t.params for t in storage_trials(tmp_path / "tiny")]
    assert params[2] not in params[:2] and len(trained.calls) == 3


def test_another_space_under_the_same_name_is_refused(tmp_path):
    run(tiny(study={"trials": 1}), tmp_path)
    with pytest.raises(ConfigErrors) as info:
        run(tiny(study={"trials": 1}, train={"steps": 4}), tmp_path)
    assert info.value.lines()[0].startswith("study.name: ")


def test_a_duplicate_config_reuses_the_first_result(tmp_path, trained):
    one_config = {"architecture": {"levels": [{"width": 8, "blocks": 1}, {"width": {"choice": [8]}, "blocks": 1}],
                                   "block": {"activation": "silu"}}}
    summary = run(tiny(**one_config), tmp_path)
    assert summary.completed == 2 and len(trained.calls) == 1
    first, second = storage_trials(summary.study_dir)
    assert second.user_attrs["reused_from"] == 0 and second.values == first.values
    assert second.user_attrs["config_hash"] == first.user_attrs["config_hash"]
    df = pd.read_csv(summary.study_dir / "trials.csv")
    assert df["reused_from"].isna().tolist() == [True, False]


def test_a_trial_that_raises_fails_alone(tmp_path, trained):
    trained.fail_on.add(2)
    summary = run(tiny(study={"trials": 3}, **DISTINCT), tmp_path)
    assert summary.trials == 3 and summary.completed == 2
    states = [t.state.name for t in storage_trials(summary.study_dir)]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    df = pd.read_csv(summary.study_dir / "trials.csv")
    assert df.loc[1, "fail_reason"] == "error: RuntimeError: boom" and df["fail_reason"].isna().tolist() == [True, False, True]
    assert json.loads((summary.study_dir / "trials" / "1" / "metrics.json").read_text())["fail_reason"] == "error: RuntimeError: boom"


def test_an_invalid_sampled_config_fails_without_training(tmp_path, trained):
    # Grid: both widths are tried; 12 channels do not split into 8 groups.
    data = tiny(study={"sampler": {"kind": "grid"}},
                architecture={"levels": [{"width": 8, "blocks": 1}, {"width": {"choice": [16, 12]}, "blocks": 1}],
                              "block": {"norm": {"groups": 8}, "activation": "silu"}})
    summary = run(data, tmp_path)
    assert summary.trials == 2 and summary.completed == 1 and len(trained.calls) == 1
    df = pd.read_csv(summary.study_dir / "trials.csv").set_index("architecture.levels.1.width")
    assert df.loc[16, "state"] == "COMPLETE" and df.loc[12, "state"] == "FAIL"
    assert df.loc[12, "fail_reason"].startswith("invalid: architecture.block.norm.groups: 8 does not divide")
    assert pd.isna(df.loc[12, "val_loss"])


def test_constraints_are_recorded_on_the_trials(tmp_path):
    summary = run(tiny(study={"trials": 1}, constraints=["params <= 100", "train_throughput >= 0"]), tmp_path)
    (t,) = storage_trials(summary.study_dir)
    params = t.user_attrs["params"]
    assert t.constraints["params <= 100"] == pytest.approx(params - 100) and params > 100
    assert t.constraints["train_throughput >= 0"] == pytest.approx(-t.user_attrs["train_throughput"])
    assert not pd.read_csv(summary.study_dir / "trials.csv").loc[0, "feasible"]
    assert len(summary.front) == 0  # an infeasible trial is on no front


def test_a_single_objective_study(tmp_path):
    summary = run(tiny(objectives=[{"metric": "val_loss"}]), tmp_path)
    assert summary.objectives == ["val_loss"] and summary.completed == 2
    study = open_study(summary.study_dir)
    assert len(study.directions) == 1 and all(len(t.values) == 1 for t in study.trials)
    df = pd.read_csv(summary.study_dir / "trials.csv")
    assert list(df.columns[:3]) == ["number", "state", "val_loss"] and "train_throughput" in df.columns


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random", "grid", "qmc"])
def test_every_sampler_runs_a_study(tmp_path, sampler):
    summary = run(tiny(study={"sampler": {"kind": sampler}}), tmp_path)
    assert summary.trials == summary.completed == 2
    params = {"architecture.levels.1.width", "architecture.block.activation"}
    assert all(t.params.keys() == params for t in storage_trials(summary.study_dir))
    assert open_study(summary.study_dir).user_attrs["format_version"] == 2


def test_cli_run_with_overrides_then_an_invalid_file_writes_nothing(tmp_path):
    runner = CliRunner()
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny(study={"name": "cli", "trials": 5})))
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", str(good), "--results-dir", str(out), "--set", "study.trials=1",
                                 "--set", "train.steps=2", "--set", "architecture.block.activation=gelu"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "cli" / "trials.csv")  # a column is named as its `--set` path
    assert len(df) == 1 and df.loc[0, "train.steps"] == 2 and df.loc[0, "architecture.block.activation"] == "gelu"

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny(study={"name": "bad"}, train={"stepz": 3},
                                       architecture={"block": {"activation": {"choice": ["silu", "swish"]}}})))
    fresh = tmp_path / "fresh"
    result = runner.invoke(app, ["run", str(bad), "--results-dir", str(fresh)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert "train.stepz: unknown field (check its spelling; `archsearch schema` lists the fields)" in lines
    assert any(line.startswith("architecture.block.activation.choice.1: ") for line in lines)
    assert "Traceback" not in result.output
    assert not fresh.exists()


def test_a_completed_trial_ends_in_the_done_phase(tmp_path):
    summary = run(tiny(**DISTINCT), tmp_path)
    assert [t.user_attrs["phase"] for t in storage_trials(summary.study_dir)] == ["done", "done"]


def test_cli_run_with_no_completed_trial_exits_1_with_the_commonest_fail_reasons(tmp_path, trained):
    trained.fail_on.update(range(1, 5))  # every trial that trains raises; the others are invalid
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny(study={"name": "failing", "trials": 4},
                                         architecture={"levels": [{"width": 8, "blocks": 1}, {"width": {"choice": [8, 12]}, "blocks": 1}],
                                                       "block": {"norm": {"groups": 8}, "activation": "silu"}},
                                         **DISTINCT)))
    result = CliRunner().invoke(app, ["run", str(space), "--results-dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    df = pd.read_csv(tmp_path / "failing" / "trials.csv")
    assert len(df) == 4 and (df["state"] == "FAIL").all()
    counts = df["fail_reason"].value_counts()
    lines = result.output.splitlines()
    assert "error: no trial completed; the commonest fail reasons:" in lines
    for reason, count in counts.items():
        assert f"{count:5d}  {reason}" in lines


def test_a_space_naming_no_objectives_resumes_a_study_under_its_own(tmp_path):
    raw = [{"metric": "val_loss"}, {"metric": "train_throughput"}]  # the default before the speed reference
    run(tiny(study={"trials": 1}, objectives=raw), tmp_path)
    summary = run(tiny(study={"trials": 2}), tmp_path)  # names none: today's default would be the normalized speed
    assert summary.objectives == ["val_loss", "train_throughput"] and summary.completed == 2
    with pytest.raises(ConfigErrors, match="another space"):  # a space that names other objectives is another study
        run(tiny(study={"trials": 3}, objectives=[{"metric": "val_loss"}, {"metric": "params"}]), tmp_path)

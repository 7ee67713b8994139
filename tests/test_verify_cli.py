"""`archsearch verify` end to end on a tiny study whose trials are made by hand (real configs,
made-up losses, so nothing trains but the retrains): the command, its files and study, resuming
after an interruption, a storage URL, two workers, and bad input refused before anything is written."""

import os
import signal
import subprocess
import sys
import warnings

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import archsearch.trial as trial_module
from archsearch.cli import app
from archsearch.errors import Interrupted
from archsearch.results import open_study
from archsearch.schema.loading import unet_config_from_dict, validate_model
from archsearch.schema.space import space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.search.events import Observer
from archsearch.verify.runner import verify_study
from test_study import TINY

runner = CliRunner()

# (width of level 1, activation, val_loss, train_throughput): front #0 and #1; #2 and #3 dominated,
# neither by the other (layer 2), ordered by loss #3, #2: `--dominated 1` picks the first, #3.
TRIALS = [(8, "silu", 0.90, 300.0), (16, "silu", 0.80, 200.0), (8, "gelu", 0.95, 250.0), (16, "gelu", 0.85, 150.0)]


def make_source(folder, storage=None):
    """A study folder as `archsearch run` leaves one (space.yaml, the storage), trials added by hand."""
    from archsearch.search.storage import open_storage
    from archsearch.search.study import create_study

    space = space_from_dict({**TINY, "study": {**TINY["study"], "heartbeat_interval": 0.5, "grace_period": 4},
                             "objectives": [{"metric": "val_loss"}, {"metric": "train_throughput"}]})  # as made up below
    folder.mkdir(parents=True)
    study = create_study(space, open_storage(storage, folder))
    train = validate_model(TrainConfig, TINY["train"]).model_dump(mode="json")
    for width, activation, loss, speed in TRIALS:
        arch = {**TINY["architecture"], "image_size": 8, "in_channels": 1,
                "levels": [{"width": 8, "blocks": 1}, {"width": width, "blocks": 1}],
                "block": {"norm": {"groups": 4}, "activation": activation}}
        config = unet_config_from_dict(arch).model_dump(mode="json")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(values=[loss, speed], user_attrs={
                "config": config, "train": train, "val_loss": loss, "train_throughput": speed}))
    (folder / "space.yaml").write_text(yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    return folder


@pytest.fixture
def source(tmp_path):
    return make_source(tmp_path / "tiny")


@pytest.fixture
def trained(monkeypatch):
    """Counts the retrains that really train."""
    calls = []
    real = trial_module.run_trial

    def spy(config, *args, **kwargs):
        calls.append(config)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", spy)
    return calls


def verify_trials(folder, storage=None):
    return open_study(folder, storage, "tiny-verify").get_trials(deepcopy=False)


def test_verify_retrains_the_front_and_a_dominated_sample_and_reports(source, trained):
    result = runner.invoke(app, ["verify", str(source), "--factor", "2", "--dominated", "1", "--rounds", "3"])
    assert result.exit_code == 0, result.output
    assert "the 3-step ranking" in result.output.lower() and "at 6 steps" in result.output
    assert "fd at" not in result.output and "in sample quality" not in result.output  # no --quality: no quality phase
    trials = verify_trials(source)
    assert all(t.user_attrs.get("fd") is None for t in trials)
    assert len(trained) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted((t.user_attrs["source_trial"], t.user_attrs["role"]) for t in trials) == [
        (0, "front"), (1, "front"), (3, "dominated")]
    assert {(t.user_attrs["budget"], t.user_attrs["train"]["steps"], t.user_attrs["train"]["seed"]) for t in trials} == {
        ("long", 6, 0)}
    vstudy = open_study(source, None, "tiny-verify")
    assert vstudy.user_attrs["verify_of"] == "tiny" and vstudy.user_attrs["kind"] == "verify"
    record = vstudy.user_attrs["remeasure"]
    assert record["members"] == [1, 0] and record["rounds"] == 3
    assert [(r, n) for r, n, _, _ in record["values"]] == [(0, 1), (0, 0), (1, 0), (1, 1), (2, 1), (2, 0)]
    table = pd.read_csv(source / "verify" / "trials.csv")
    assert sorted(table["source_trial"]) == [0, 1, 3] and set(table["train.steps"]) == {6}
    assert (source / "verify" / "trials" / "2" / "metrics.json").exists()
    md = (source / "verify.md").read_text()
    assert "| 3 steps and 6 steps | 3 | τ = " in md and "| #0 | train_throughput | 300 |" in md
    assert (source / "plots" / "verify-ranks.png").exists() and (source / "plots" / "verify-front.png").exists()

    again = runner.invoke(app, ["verify", str(source), "--factor", "2", "--dominated", "1", "--rounds", "3"])
    assert again.exit_code == 0, again.output
    assert len(trained) == 3 and "re-measuring" not in again.output  # nothing left to train or time
    assert len(verify_trials(source)) == 3

    report = runner.invoke(app, ["report", str(source)])
    assert report.exit_code == 0, report.output
    assert "## Would the ranking hold with longer training?" in (source / "report.md").read_text()


class StopAtSecondTraining(Observer):
    """Ctrl-C, as the signal handler raises it, once the second retrain is training."""

    def __init__(self):
        self.started = 0

    def trial_started(self, number, label):
        self.started += 1

    def progress(self, phase, step, total, loss=None):
        if phase == "training" and self.started == 2:
            raise Interrupted(signal.SIGINT)


def test_an_interrupted_verify_resumes_with_what_is_missing(source, trained):
    with pytest.raises(Interrupted):
        verify_study(source, factor=2, dominated=1, rounds=0, live=False, observers=[StopAtSecondTraining()])
    trials = verify_trials(source)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert trials[1].user_attrs["fail_reason"] == "interrupted" and not (source / "verify.md").exists()
    pd.testing.assert_series_equal(pd.read_csv(source / "verify" / "trials.csv")["state"],
                                   pd.Series(["COMPLETE", "FAIL"], name="state"))

    run = verify_study(source, factor=2, dominated=1, rounds=0, live=False)
    assert len(trained) == 2 + 2  # before: the first and the interrupted one; now: that one again and the last
    done = [t for t in verify_trials(source) if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["source_trial"] for t in done) == [0, 1, 3]
    assert run.pending == [] and run.verification.tau.n == 3 and (source / "verify.md").exists()


def test_verify_keeps_its_study_in_a_storage_url(tmp_path, trained):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    folder = make_source(tmp_path / "tiny", storage=url)
    result = runner.invoke(app, ["verify", str(folder), "--storage", url, "--study", "tiny", "--steps", "5",
                                 "--dominated", "0", "--rounds", "0", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert not (folder / "optuna.journal").exists()
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    assert names == ["tiny", "tiny-verify"]
    trials = verify_trials(None, url)
    assert len(trained) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    # The front at 5 steps, then the front at its own 3 steps with the next seed (the noise floor).
    assert sorted((t.user_attrs["source_trial"], t.user_attrs["budget"], t.user_attrs["train"]["steps"],
                   t.user_attrs["train"]["seed"]) for t in trials) == [(0, "long", 5, 0), (0, "seed", 3, 1),
                                                                        (1, "long", 5, 0), (1, "seed", 3, 1)]
    assert "two seeds at 3 steps (noise floor)" in (folder / "verify.md").read_text()


def snapshot(root):
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("args,expected", [
    (["--factor", "0.5"], "--factor: 0.5; the longer budget is factor × each trial's train.steps"),
    (["--factor", "5000"], "at most 1000"),
    (["--factor", "2", "--steps", "9"], "--steps: give --factor or --steps, not both"),
    (["--steps", "3"], "--steps: 3 steps is not more than the 3 steps trial #1 trained; give a longer budget (and 3 more trials)"),
    (["--study", "nope"], "--study: no study 'nope' in the storage; it holds: tiny"),
    (["--seeds", "3"], "--seeds: 3; use 1"),
    (["--rounds", "1"], "--rounds: 1; re-measure the front in 3 to 1000 rounds"),
    (["--dominated", "-1"], "--dominated: -1"),
    (["--workers", "0"], "--workers: 0 workers"),
    (["--storage", "nonsense"], "--storage: "),
    (["--device", "cuda:9"], "--device: "),
])
def test_bad_options_are_exit_2_and_write_nothing(source, args, expected):
    before = snapshot(source.parent)
    result = runner.invoke(app, ["verify", str(source), *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert snapshot(source.parent) == before


def test_a_folder_that_is_no_study_or_has_no_space_file(tmp_path, source):
    result = runner.invoke(app, ["verify", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and f"{tmp_path / 'nowhere'}: is not a study folder (no optuna.journal)" in result.output
    (source / "space.yaml").unlink()
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["verify", str(source)])
    assert result.exit_code == 2 and f"{source}: holds no space.yaml" in result.output
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_two_workers_share_the_retrains(source):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "archsearch.cli", "verify", str(source), "--factor", "2",
                           "--dominated", "2", "--rounds", "0", "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = verify_trials(source)
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["source_trial"] for t in trials} == {0, 1, 2, 3}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes trained
    for t in trials:  # the parent prints each retrain its workers finish, once
        assert proc.stdout.count(f"trial {t.number} (retrains #{t.user_attrs['source_trial']}, ") == 1, proc.stdout
    assert (source / "verify.md").exists() and len(pd.read_csv(source / "verify" / "trials.csv")) == len(trials)

"""The engine's events (archsearch.search.events): what one run emits, and the contract every
observer keeps — the study folder, the live display and the ablation's progress line each take
the same recorded stream and make sense of it."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import yaml
from rich.console import Console

import archsearch.trial as trial_module
from archsearch import run_study
from archsearch.ablation.runner import QueueDisplay as AblationDisplay
from archsearch.folder import StudyFolder
from archsearch.report.live import StudyDisplay
from archsearch.schema.space import space_from_dict
from archsearch.search.events import Broadcast, Observer
from test_study import DISTINCT, tiny

OBJECTIVES = ["val_loss", "train_throughput"]
NAMES = ("data_loaded", "study_changed", "trial_started", "progress", "evaluated", "trial_finished", "study_stopped")


class Recorder(Observer):
    """Keeps every event as (name, args)."""

    def __init__(self):
        self.events: list[tuple[str, tuple]] = []

    def data_loaded(self, *args): self.events.append(("data_loaded", args))
    def study_changed(self, *args): self.events.append(("study_changed", args))
    def trial_started(self, *args): self.events.append(("trial_started", args))
    def progress(self, *args): self.events.append(("progress", args))
    def evaluated(self, *args): self.events.append(("evaluated", args))
    def trial_finished(self, *args): self.events.append(("trial_finished", args))
    def study_stopped(self, *args): self.events.append(("study_stopped", args))


def replay(events, observer: Observer) -> None:
    for name, args in events:
        getattr(observer, name)(*args)


@pytest.fixture(scope="module")
def live_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def recorded(live_dir):
    """The events of a real 3-trial study whose second trial raises while training."""
    real, calls = trial_module.run_trial, []

    def second_raises(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    recorder = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trial_module, "run_trial", second_raises)
        space = tiny(study={"trials": 3}, eval={"curve_points": 1}, **DISTINCT)  # one evaluation mid-training
        run_study(space_from_dict(space), live_dir, view=recorder)
    return recorder.events


def test_one_run_emits_one_stream_in_order(recorded):
    names = [name for name, _ in recorded]
    assert names[0] == "data_loaded" and names[1] == "study_changed" and names[-1] == "study_stopped"
    assert set(names) == set(NAMES)
    started = [args[0] for name, args in recorded if name == "trial_started"]
    finished = [args for name, args in recorded if name == "trial_finished"]
    assert started == [t.number for t, _, _ in finished] == [0, 1, 2]
    assert [t.state.name for t, _, _ in finished] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert [done for _, _, done in finished] == [1, 2, 3]
    assert finished[1][0].user_attrs["fail_reason"] == "error: RuntimeError: boom"
    assert all(len(trials) == t.number + 1 for t, trials, _ in finished)  # the study as it stood then
    evaluated = [args for name, args in recorded if name == "evaluated"]
    assert [number for number, _, _ in evaluated] == [0, 2]  # the second trial raised before it
    assert all(0 < step < 3 and val_loss > 0 for _, step, val_loss in evaluated)
    for i, name in enumerate(names):  # progress and evaluations only inside a trial
        if name in ("progress", "evaluated"):
            assert names[:i].count("trial_started") == names[:i].count("trial_finished") + 1
    assert [t.user_attrs["phase"] for t, _, _ in finished if t.state.name == "COMPLETE"] == ["done", "done"]


def test_the_study_folder_writes_from_the_stream_what_the_run_wrote(recorded, live_dir, tmp_path):
    replay(recorded, StudyFolder(tmp_path / "replay", OBJECTIVES))
    live, replayed = (pd.read_csv(d / "trials.csv") for d in (live_dir / "tiny", tmp_path / "replay"))
    assert replayed["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE"]
    assert replayed[["number", "state", "val_loss", "fail_reason"]].equals(live[["number", "state", "val_loss", "fail_reason"]])
    for number, state in enumerate(replayed["state"]):
        trial_dir = tmp_path / "replay" / "trials" / str(number)
        assert yaml.safe_load((trial_dir / "config.yaml").read_text())["levels"][0]["width"] == 8
        assert '"state": "%s"' % state in (trial_dir / "metrics.json").read_text()
    assert (tmp_path / "replay" / "trials.parquet").exists()


def test_the_live_display_prints_one_line_per_trial_and_keeps_the_front(recorded):
    console = Console(file=io.StringIO(), width=120)
    display = StudyDisplay(console, "tiny", 3, OBJECTIVES, ["minimize", "maximize"], enabled=False)
    replay(recorded, display)
    out = console.file.getvalue()
    assert "trial 0: complete  [1/3]" in out
    assert "trial 1: fail (error: RuntimeError: boom)  [2/3]" in out
    assert "trial 2: complete  [3/3]" in out
    assert display.done == 3 and set(display.front["number"]) <= {0, 2} and len(display.front)


def test_the_live_display_renders_the_stream_in_a_terminal(recorded):
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    display = StudyDisplay(console, "tiny", 3, OBJECTIVES, ["minimize", "maximize"])
    with display:
        replay(recorded, display)
        display.live.refresh()
    out = console.file.getvalue()
    assert "tiny  trials done 3/3" in out and "Pareto front" in out


def test_the_ablation_line_counts_what_the_stream_says_is_done(recorded):
    console = Console(file=io.StringIO(), width=200)
    display = AblationDisplay(console, "tiny", 3, enabled=False)
    replay(recorded, display)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and display.done == 3
    assert lines[0].startswith("trial 0: val_loss ") and "[1/3," in lines[0]
    assert lines[1].startswith("trial 1: failed: error: RuntimeError: boom") and "[2/3," in lines[1]


def test_the_queue_line_in_the_parent_of_workers_prints_what_they_finish():
    """The parent of `verify --workers` runs no trial: its lines come from the study as it changes,
    each finished trial once, none that was there at the start, and the live line lists the running."""
    import warnings

    import optuna

    study = optuna.create_study(directions=["minimize", "maximize"])
    add = lambda **kw: study.add_trial(optuna.trial.create_trial(**kw))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add(values=[0.5, 10.0], user_attrs={"val_loss": 0.5, "train_throughput": 10.0})  # #0: from an earlier run
        console = Console(file=io.StringIO(), width=200)
        display = AblationDisplay(console, "tiny-verify", 3, enabled=False, label=lambda t: f"retrains #{t.number + 10}")
        display.study_changed(study.get_trials(), 1, [])
        add(values=[0.4, 20.0], user_attrs={"val_loss": 0.4, "train_throughput": 20.0})
        add(state=optuna.trial.TrialState.FAIL, user_attrs={"outcome": "interrupted", "fail_reason": "interrupted"})
        display.study_changed(study.get_trials(), 2, [(3, "training")])
        assert "running: trial 3 (training)" in display._render().plain
        add(state=optuna.trial.TrialState.FAIL, user_attrs={"outcome": "diverged", "fail_reason": "diverged: loss nan"})
        display.study_changed(study.get_trials(), 3, [])
    lines = console.file.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["trial 1 (retrains #11)", "trial 3 (retrains #13)"]
    assert "val_loss 0.4, 20 images/s  [2/3" in lines[0] and "failed: diverged: loss nan  [3/3" in lines[1]


def test_a_broadcast_passes_every_event_to_each_observer_in_order(recorded):
    first, second = Recorder(), Recorder()
    replay(recorded, Broadcast([first, None, second]))
    assert first.events == second.events == recorded

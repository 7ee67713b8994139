"""The study folder's tables at scale: the cached (incremental) table equals a full regeneration,
the rewrite is bounded to a share of the study's time, and the duplicate lookup finds the one
matching trial among thousands."""

import optuna
import pandas as pd
import pytest

from archsearch.folder import TABLE_SHARE, StudyFolder
from archsearch.results import trials_dataframe
from archsearch.search.objective import _find_duplicate

OBJECTIVES = ["val_loss", "train_throughput"]


def record(number: int, state=optuna.trial.TrialState.COMPLETE, **attrs):
    values = [1.0 / (number + 1), float(number)] if state == optuna.trial.TrialState.COMPLETE else None
    frozen = optuna.trial.create_trial(
        state=state, values=values,
        params={"architecture.levels.0.width": 8 * (1 + number % 4)},
        distributions={"architecture.levels.0.width": optuna.distributions.CategoricalDistribution([8, 16, 24, 32])},
        user_attrs={"config": {"levels": [{"width": 8 * (1 + number % 4)}]}, "config_hash": f"c{number}",
                    "settings_hash": "s", "val_loss": 1.0 / (number + 1), "train_throughput": float(number),
                    "val_loss_buckets": [0.1, 0.2], **attrs})
    frozen.number = number
    return frozen


def test_the_cached_table_equals_a_full_regeneration():
    rows: dict = {}
    trials = [record(n) for n in range(6)] + [record(6, optuna.trial.TrialState.RUNNING)]
    first = trials_dataframe(trials, OBJECTIVES, rows=rows)
    pd.testing.assert_frame_equal(first, trials_dataframe(trials, OBJECTIVES))
    assert set(rows) == set(range(6)), "finished rows are cached, the running one is not"
    # the running trial finishes, a failed one and one with a new column (a rung loss) arrive
    trials[6] = record(6, fail_reason=None)
    trials += [record(7, optuna.trial.TrialState.FAIL, fail_reason="oom: boom"), record(8, rung_0=[20, 0.5])]
    pd.testing.assert_frame_equal(trials_dataframe(trials, OBJECTIVES, rows=rows), trials_dataframe(trials, OBJECTIVES))


def test_the_folder_writes_the_tables_after_every_trial_when_they_are_cheap(tmp_path):
    folder = StudyFolder(tmp_path, OBJECTIVES)
    trials = [record(n) for n in range(3)]
    for n in range(1, 4):
        folder.trial_finished(trials[n - 1], trials[:n], n)
        assert len(pd.read_csv(tmp_path / "trials.csv")) == n


def test_an_expensive_rewrite_is_put_off_but_never_lost(tmp_path):
    folder = StudyFolder(tmp_path, OBJECTIVES)
    trials = [record(n) for n in range(3)]
    folder.trial_finished(trials[0], trials[:1], 1)
    folder._cost = 3600.0  # as if the last rewrite took an hour: the next waits 1 / TABLE_SHARE hours
    folder.trial_finished(trials[1], trials[:2], 2)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 1
    assert (tmp_path / "trials" / "1" / "metrics.json").exists(), "the trial's own files are written at once"
    folder.study_stopped(trials, 3)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 3
    assert 0 < TABLE_SHARE < 1


@pytest.mark.parametrize("position", [0, 1234, 2999])
def test_the_duplicate_lookup_finds_the_one_match_among_thousands(position):
    trials = [record(n) for n in range(3000)]
    match = _find_duplicate(trials, f"c{position}", "s")
    assert match is not None and match.number == position
    assert _find_duplicate(trials, f"c{position}", "other settings") is None
    assert _find_duplicate(trials, "no such config", "s") is None


def test_a_trial_asked_past_the_target_gives_way_and_does_not_count():
    """Workers that counted at once all saw room for one more: the trials past the target, ranked
    by number among those that count, are failed as surplus before they train."""
    from archsearch.search.engine import SearchSource, surplus
    from archsearch.search.worker import count_trials

    study = optuna.create_study(directions=["minimize", "maximize"])
    for _ in range(3):
        study.tell(study.ask(), [1.0, 1.0])
    racing = [study.ask(), study.ask()]  # two workers asked when 3 of 4 were done
    assert not surplus(study, racing[0].number, 4) and surplus(study, racing[1].number, 4)
    retried = study.ask()  # a retried failure does not count, so it takes no place
    retried.set_user_attr("retried", True)
    study.tell(retried, state=optuna.trial.TrialState.FAIL)
    assert not surplus(study, racing[0].number, 4)
    # through the source: a worker whose count is stale asks one more; it is given back at once
    import archsearch.search.engine as engine

    study.tell(racing[1], [1.0, 1.0])
    study.tell(racing[0], [1.0, 1.0])  # 5 count now
    real = engine.count_trials
    engine.count_trials = lambda s: (4, 0, 0)  # what it read before the others' tells
    try:
        assert SearchSource(space=None, target=5).next(study) is engine.WAIT
    finally:
        engine.count_trials = real
    given_back = study.get_trials(deepcopy=False)[-1]
    assert given_back.state == optuna.trial.TrialState.FAIL and given_back.user_attrs["surplus"] is True
    assert given_back.user_attrs["fail_reason"].startswith("skipped: the study reached its 5 trials")
    assert count_trials(study)[0] == 5 and SearchSource(space=None, target=5).next(study) is None

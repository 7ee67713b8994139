"""benchmarks/replay_search.py: the early-stopping replay runs on the committed curves table,
spends the budget it is given, stops trials only where a strategy stops them, and refuses rung
settings the table cannot answer."""

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def replay():
    spec = importlib.util.spec_from_file_location("replay_search", ROOT / "benchmarks" / "replay_search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(replay):
    import pandas as pd

    df = pd.read_parquet(replay.TABLE)
    return replay.Table(df, replay.searched_fields(df))


@pytest.mark.parametrize("text", ["10:1", "15:3", "0:3", "300:3", "ten:3", "10"])
def test_rung_settings_the_table_cannot_answer_are_refused(replay, text):
    with pytest.raises(argparse.ArgumentTypeError, match="MIN_STEPS:ETA|eta|min_steps"):
        replay.asha_variant(text)


def test_a_variant_names_its_rungs(replay):
    variant = replay.asha_variant("10:4")
    assert (variant.name, variant.rungs) == ("mo-asha 10:4", [10, 40, 160])
    assert replay.STRATEGIES[0].rungs == [] and replay.STRATEGIES[1].rungs == [20, 60, 180]


def test_rung_losses_agree_with_themselves_and_less_with_earlier_steps(table):
    assert table.rank_agreement(300) == pytest.approx(1.0)
    assert table.rank_agreement(20) < table.rank_agreement(180) < 1.0


@pytest.mark.parametrize("name", ["full", "mo-asha"])
def test_a_replay_spends_its_budget_and_stops_only_under_asha(replay, table, name):
    import optuna

    from archsearch.schema.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(replay.SPACE, {"train.steps": str(replay.STEPS)})
    strategy = next(s for s in replay.STRATEGIES if s.name == name)
    budget = 4 * replay.STEPS
    run = replay.replay(table, space, strategy, seed=0, workers=1, budget_steps=budget,
                        batch=space.fixed_train().batch_size)
    spent = run.history[-1][0]
    assert run.completed and spent <= budget + replay.STEPS  # the last trial may run past the budget
    assert all(later[0] >= earlier[0] and later[1] >= earlier[1] for earlier, later in zip(run.history, run.history[1:]))
    if name == "full":
        assert run.stopped == 0 and run.trained == len(run.completed)
    else:
        assert run.stopped > 0 and run.trained == len(run.completed) + run.stopped

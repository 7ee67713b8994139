"""`study.checkpoints`: which completed trials keep their final weights as trials/<n>/checkpoint.pt.

`front` (the default) keeps exactly the front's, deleting a checkpoint when its trial leaves the
front; `all` keeps every completed trial's; `none` writes none. A kept checkpoint is the model
that was scored: evaluated again under the study's validation protocol it gives the recorded
val_loss.
"""

import pandas as pd
import pytest
import torch

from archsearch import run_study
from archsearch.data import load_data
from archsearch.folder import prune_checkpoints
from archsearch.nn import build_unet
from archsearch.results import front_of, load_results
from archsearch.schema.loading import unet_config_from_dict, validate_model
from archsearch.schema.space import space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.settings import resolve_run_settings
from archsearch.train import load_checkpoint
from archsearch.trial import TrialContext

from test_study import DISTINCT, tiny

OBJECTIVES = ["val_loss", "train_throughput"]


def study(tmp_path, checkpoints: str | None, trials: int = 5):
    section = {"trials": trials} if checkpoints is None else {"trials": trials, "checkpoints": checkpoints}
    data = tiny(study=section, objectives=[{"metric": m} for m in OBJECTIVES], **DISTINCT)
    summary = run_study(space_from_dict(data), tmp_path)
    df = load_results(summary.study_dir)
    return summary.study_dir, df, data


def kept(study_dir) -> set[int]:
    return {int(p.parent.name) for p in (study_dir / "trials").glob("*/checkpoint.pt")}


def front_numbers(df) -> set[int]:
    return set(front_of(df, OBJECTIVES, ["minimize", "maximize"])["number"].astype(int))


def test_the_default_keeps_exactly_the_fronts_weights(tmp_path):
    study_dir, df, _ = study(tmp_path, None)
    completed = set(df[df["state"] == "COMPLETE"]["number"].astype(int))
    assert kept(study_dir) == front_numbers(df)
    assert front_numbers(df) < completed, "the test needs a dominated trial whose checkpoint was deleted"
    assert not list((study_dir / "trials").glob("*/.checkpoint.pt.*")), "no temporary file is left behind"


def test_all_keeps_every_completed_trials_weights_and_none_writes_none(tmp_path):
    study_dir, df, _ = study(tmp_path / "all", "all", trials=3)
    assert kept(study_dir) == set(df[df["state"] == "COMPLETE"]["number"].astype(int)) != set()
    study_dir, _, _ = study(tmp_path / "none", "none", trials=2)
    assert kept(study_dir) == set()


def test_a_kept_checkpoint_is_the_scored_model(tmp_path):
    study_dir, df, data = study(tmp_path, "all", trials=2)
    space = space_from_dict(data)
    row = df[df["state"] == "COMPLETE"].iloc[0]
    state = load_checkpoint(study_dir / "trials" / str(int(row["number"])) / "checkpoint.pt")  # weights_only
    config = unet_config_from_dict(state["config"])
    train_cfg = validate_model(TrainConfig, state["train"], "train")
    model = build_unet(config)
    model.load_state_dict(state["state_dict"])
    context = TrialContext.create(load_data(space.data), train_cfg, space.eval, "cpu")
    again = context.protocol.evaluate(model, resolve_run_settings(train_cfg, torch.device("cpu")))
    assert again.val_loss == pytest.approx(float(row["val_loss"]), rel=1e-6)
    assert state["data"]["name"] == "digits"


def test_pruning_spares_the_front_and_running_trials(tmp_path):
    table = pd.DataFrame([
        {"number": 0, "state": "COMPLETE", "val_loss": 1.0, "train_throughput": 10.0},  # front
        {"number": 1, "state": "COMPLETE", "val_loss": 2.0, "train_throughput": 5.0},   # dominated by 0
        {"number": 2, "state": "COMPLETE", "val_loss": 0.5, "train_throughput": 1.0},   # front
        {"number": 3, "state": "FAIL", "val_loss": None, "train_throughput": None},     # e.g. no objective value
        {"number": 4, "state": "RUNNING", "val_loss": None, "train_throughput": None},  # still writing its weights
        {"number": 5, "state": "PRUNED", "val_loss": None, "train_throughput": None},
    ])
    for n in range(6):
        (tmp_path / "trials" / str(n)).mkdir(parents=True)
        (tmp_path / "trials" / str(n) / "checkpoint.pt").write_bytes(b"weights")
    deleted = prune_checkpoints(tmp_path, table, OBJECTIVES, ["minimize", "maximize"])
    assert sorted(deleted) == [1, 3, 5]
    assert kept(tmp_path) == {0, 2, 4}
    assert prune_checkpoints(tmp_path, table, OBJECTIVES, ["minimize", "maximize"]) == []  # idempotent


def test_an_infeasible_trial_is_off_the_front_and_loses_its_weights(tmp_path):
    table = pd.DataFrame([
        {"number": 0, "state": "COMPLETE", "val_loss": 1.0, "train_throughput": 10.0, "feasible": True},
        {"number": 1, "state": "COMPLETE", "val_loss": 0.1, "train_throughput": 99.0, "feasible": False},
    ])
    for n in range(2):
        (tmp_path / "trials" / str(n)).mkdir(parents=True)
        (tmp_path / "trials" / str(n) / "checkpoint.pt").write_bytes(b"weights")
    assert prune_checkpoints(tmp_path, table, OBJECTIVES, ["minimize", "maximize"]) == [1]


def test_the_schema_rejects_an_unknown_policy():
    from archsearch.errors import ConfigErrors

    with pytest.raises(ConfigErrors) as err:
        space_from_dict(tiny(study={"checkpoints": "best"}))
    assert any(line.startswith("study.checkpoints:") for line in err.value.lines())

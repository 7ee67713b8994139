"""Studies written before the one vocabulary (format version 1) still resume and report.

Until format version 2 archsearch named an architecture parameter by its path alone
(`levels.1.width`; training ones were already `train.lr`), wrote the table column as
`arch.levels.1.width`, and recorded no `format_version`. Such a study is built here with Optuna
directly, as that code wrote it (study attributes `objectives` and metric names; per trial the
parameters, `config`, `config_hash`, `train`, `settings_hash`, the metrics, `outcome`, `phase`),
then resumed by `archsearch run` on its journal storage and read by `archsearch report`.
"""

import copy
import re
import warnings

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from archsearch.cli import app
from archsearch.report.analysis import analyze, load_study_input
from archsearch.results import open_study
from archsearch.schema.distributions import Choice, as_distribution
from archsearch.schema.loading import unet_config_from_dict, validate_model
from archsearch.schema.paths import format_version
from archsearch.schema.space import space_from_dict
from archsearch.schema.train import TrainConfig
from archsearch.search.objective import config_hash, settings_hash
from archsearch.search.storage import open_storage
from test_study import DISTINCT, tiny

# (width of level 1, activation, lr, val_loss, train_throughput); None for the losses: it raised.
OLD_TRIALS = [(8, "silu", 2e-3, 0.30, 900.0), (16, "gelu", 5e-3, 0.20, 500.0), (16, "silu", 3e-3, None, None)]
OLD_PARAMS = {"levels.1.width", "block.activation", "train.lr"}


def write_version_1_study(folder, data: dict) -> None:
    """The study folder `archsearch run` wrote for `data` before format version 2 (whose default
    objectives were the raw speed's: the resumed run, naming none, keeps them)."""
    space = space_from_dict({"objectives": [{"metric": "val_loss"}, {"metric": "train_throughput"}], **data})
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name=space.study.name, storage=open_storage(None, folder),
                                directions=[o.direction for o in space.objectives])
    study.set_user_attr("objectives", [o.model_dump() for o in space.objectives])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names([o.metric for o in space.objectives])
    distributions = {"levels.1.width": _optuna(space.architecture["levels"][1]["width"]),
                     "block.activation": _optuna(space.architecture["block"]["activation"]),
                     "train.lr": _optuna(space.train["lr"])}
    rows = []
    for number, (width, activation, lr, loss, speed) in enumerate(OLD_TRIALS):
        arch = copy.deepcopy(space.architecture)
        arch["levels"][1]["width"], arch["block"]["activation"] = width, activation
        config = unet_config_from_dict(arch)
        train = validate_model(TrainConfig, {**space.train, "lr": lr})
        attrs = {"config": config.model_dump(mode="json"), "config_hash": config_hash(config),
                 "train": train.model_dump(mode="json"), "settings_hash": settings_hash(train, space),
                 "params": 1000 + width, "device": "cpu (old)"}
        params = {"levels.1.width": width, "block.activation": activation, "train.lr": lr}
        if loss is None:
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params, distributions=distributions,
                                              user_attrs={**attrs, "fail_reason": "error: RuntimeError: boom", "outcome": "error"})
        else:
            trial = optuna.trial.create_trial(params=params, distributions=distributions, values=[loss, speed], user_attrs={
                **attrs, "val_loss": loss, "train_throughput": speed, "val_loss_buckets": [loss] * 5,
                "outcome": "completed", "phase": "done"})
        study.add_trial(trial)
        rows.append({"number": number, "arch.levels.1.width": width, "arch.block.activation": activation, "train.lr": lr})
    (folder / "space.yaml").write_text(yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)  # the old columns, as a table on disk had them


def _optuna(node):
    """The distribution the old suggester gave Optuna for a space's distribution."""
    dist = as_distribution(node)
    if isinstance(dist, Choice):
        return optuna.distributions.CategoricalDistribution(dist.encoded())
    return optuna.distributions.FloatDistribution(dist.low, dist.high, step=dist.step, log=dist.log)


# The grid sampler lists every parameter by name: a wrong name fails the trial it samples.
LR = {"tpe": DISTINCT["train"]["lr"], "grid": {"float": {"low": 2e-3, "high": 5e-3, "step": 1e-3}}}


@pytest.mark.parametrize("sampler", LR)
def test_a_version_1_study_resumes_under_its_old_names_and_reports_under_the_new(tmp_path, sampler):
    data = tiny(study={"name": "old", "trials": 4, "sampler": {"kind": sampler}}, train={"lr": LR[sampler]})
    folder = tmp_path / "old"
    write_version_1_study(folder, data)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(data))

    result = CliRunner().invoke(app, ["run", str(space_file), "--results-dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    study = open_study(folder)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4  # the three old trials count (the failed one too): one more ran
    assert format_version(study.user_attrs) == 1  # still version 1: its history keeps its names
    new = trials[3]
    assert new.state.name == "COMPLETE" and set(new.params) == OLD_PARAMS  # the sampler sees every old trial

    table = pd.read_csv(folder / "trials.csv")  # rewritten from the storage: today's columns only
    assert len(table) == 4 and not [c for c in table.columns if c.startswith("arch.")]
    assert table["architecture.levels.1.width"].tolist()[:3] == [8, 16, 16]
    assert table["architecture.block.activation"].tolist() == [t.user_attrs["config"]["block"]["activation"] for t in trials]
    assert table["train.lr"].tolist()[:3] == [2e-3, 5e-3, 3e-3]

    result = CliRunner().invoke(app, ["report", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    md = (folder / "report.md").read_text()
    assert "| architecture.levels.1.width | 8 |" in md  # a marginal effect, under the field's one name
    assert "| levels.1.width |" not in md and not re.search(r"\barch\.", md)
    (analysis,) = analyze([load_study_input(folder)], importances=False).studies
    assert set(analysis.input.searched) == {"architecture.levels.1.width", "architecture.block.activation", "train.lr"}
    assert analysis.counts["COMPLETE"] == 3 and analysis.counts["FAIL"] == 1


"""A small study folder for the export tests: three trials with real configs, built without training.

Trial 0 (concat skips, diffusers-expressible) is the knee; trial 1 has add-skips (which diffusers
cannot express); trial 2 is another concat network. `with_checkpoint` gives trial 0 a
`trials/0/checkpoint.pt` (random weights, in archsearch.train's checkpoint format), as a trained
study's front keeps.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from archsearch.schema import unet_config_from_dict

OBJECTIVES = [{"metric": "val_loss", "direction": "minimize"}, {"metric": "train_throughput", "direction": "maximize"}]
BASE = {"image_size": 16, "in_channels": 1,
        "levels": [{"width": 16, "blocks": 1, "attention": True}, {"width": 32, "blocks": 1}],
        "block": {"norm": {"kind": "group", "groups": 4}}, "attention": {"head_channels": 8}}
# (skip override, val_loss, throughput): no trial dominates another; the knee (normalized over
# the front, nearest the ideal point) is trial 0 at (0.5, 0.5).
TRIALS = [({}, 0.2, 500.0), ({"skip": {"combine": "add", "project": True}}, 0.3, 900.0), ({}, 0.1, 100.0)]


def trial_config(number: int):
    return unet_config_from_dict({**BASE, **TRIALS[number][0]})


def make_export_study(folder: Path, with_checkpoint: bool = True) -> Path:
    from archsearch.search.storage import open_storage

    folder.mkdir(parents=True)
    study = optuna.create_study(study_name=folder.name, storage=open_storage(None, folder),
                                directions=[o["direction"] for o in OBJECTIVES])
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("format_version", 2)
    dist = {"architecture.skip.combine": optuna.distributions.CategoricalDistribution(["concat", "add"])}
    for number, (override, loss, speed) in enumerate(TRIALS):
        config = trial_config(number)
        attrs = {"config": config.model_dump(mode="json"), "val_loss": loss, "train_throughput": speed}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(params={"architecture.skip.combine": config.skip.combine},
                                                      distributions=dist, values=[loss, speed], user_attrs=attrs))
    if with_checkpoint:
        save_random_checkpoint(folder / "trials" / "0" / "checkpoint.pt", trial_config(0))
    return folder


def save_random_checkpoint(path: Path, config) -> Path:
    from archsearch.export.check import random_weights
    from archsearch.nn import build_unet
    from archsearch.schema.train import TrainConfig
    from archsearch.train import save_checkpoint

    model = build_unet(config)
    model.load_state_dict(random_weights(config, seed=1))
    return save_checkpoint(path, model, config.model_dump(mode="json"), TrainConfig().model_dump(mode="json"), {})

"""What an export starts from: one network's config, and its weights when it has some.

    source = study_source("results/quickstart", "knee")   # a trial of a study: a number, or the knee
    source = file_source("my_unet.yaml")                  # a bare U-Net config (a trial's config.yaml)
    source = file_source("model.pt")                      # a checkpoint of `archsearch train --checkpoint`

A trial's config is the one its study's storage holds (what it was trained as); its weights are
`trials/<n>/checkpoint.pt` in the study folder when that exists (archsearch.train's checkpoint
format). The knee is the report's: archsearch.pareto.knee_point of the study's front
(archsearch.results.front_of), so `--trial knee` exports the network the report points at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConfigErrors
from ..pareto import knee_point
from ..results import front_of, objective_names, open_study, trials_dataframe
from ..schema.loading import load_unet_config, unet_config_from_dict
from ..schema.paths import ARCHITECTURE
from ..schema.unet import UNetConfig
from ..search.records import CHECKPOINT_NAME, checkpoint_path

__all__ = ["Source", "study_source", "file_source", "select_trial", "study_trial", "CHECKPOINT_NAME"]


@dataclass
class Source:
    """One network to export: its config, where its weights are (None: it has none), a label for
    messages, and the prefix its config's fields have in error paths (`architecture` for a trial)."""

    config: UNetConfig
    checkpoint: Path | None
    label: str
    prefix: str = ""

    def state_dict(self) -> dict[str, Any] | None:
        """The trained weights, checked to fit the config; None when there are none."""
        if self.checkpoint is None:
            return None
        from ..train import load_checkpoint

        state = load_checkpoint(self.checkpoint)["state_dict"]
        from ..nn import meta_unet

        expected = {k: tuple(v.shape) for k, v in meta_unet(self.config).state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if found != expected:
            wrong = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
            raise ConfigErrors([ConfigError(str(self.checkpoint), f"its weights do not fit the config ({len(wrong)} "
                                                                  f"tensors differ, e.g. {wrong[0]})")])
        return state


def select_trial(study, which: str) -> int:
    """The trial number `which` names in `study`: a number, or `knee` (the front's knee)."""
    trials = study.get_trials(deepcopy=False)
    if which == "knee":
        objectives = objective_names(study)
        directions = [d.name.lower() for d in study.directions]
        df = trials_dataframe(trials, objectives)
        knee = knee_point(front_of(df, objectives, directions), objectives, directions)
        if knee is None:
            raise ConfigErrors([ConfigError("--trial", "knee: the study has no completed feasible trial yet, so no "
                                                       "front and no knee; name a trial by its number")])
        return int(knee["number"])
    if not which.isdigit():
        raise ConfigErrors([ConfigError("--trial", f"{which!r} is neither a trial number nor `knee`")])
    numbers = [t.number for t in trials]
    if int(which) not in numbers:
        span = f"0 to {max(numbers)}" if numbers else "none"
        raise ConfigErrors([ConfigError("--trial", f"{which}: no such trial in the study (its trials: {span})")])
    return int(which)


def study_trial(study_dir: str | Path, which: str):
    """(number, FrozenTrial) of trial `which` (a number or `knee`) of the study in `study_dir`."""
    study = open_study(Path(study_dir))
    number = select_trial(study, which)
    return number, next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def study_source(study_dir: str | Path, which: str) -> Source:
    """Trial `which` (a number or `knee`) of the study in `study_dir`."""
    study_dir = Path(study_dir)
    number, trial = study_trial(study_dir, which)
    config = trial.user_attrs.get("config")
    if not isinstance(config, dict):
        raise ConfigErrors([ConfigError("--trial", f"{number}: the trial records no config (it failed before "
                                                   f"sampling one: {trial.user_attrs.get('fail_reason', 'no reason')})")])
    checkpoint = checkpoint_path(study_dir, number)
    label = f"trial {number}{' (the knee)' if which == 'knee' else ''} of {study_dir}"
    return Source(unet_config_from_dict(config, prefix=ARCHITECTURE), checkpoint if checkpoint.exists() else None,
                  label, prefix=ARCHITECTURE)


def file_source(path: str | Path) -> Source:
    """A U-Net config file, or a checkpoint (`.pt`) with the config it was trained as."""
    path = Path(path)
    if not path.is_file():
        raise ConfigErrors([ConfigError(str(path), "no such file (give a study folder, a U-Net config or a checkpoint)")])
    if path.suffix == ".pt":
        from ..train import load_checkpoint

        config = load_checkpoint(path)["config"]
        return Source(_in_file(path, lambda: unet_config_from_dict(config)), path, f"checkpoint {path}")
    return Source(_in_file(path, lambda: load_unet_config(path)), None, f"config {path}")


def _in_file(path: Path, read):
    """`read()`, its config's problems located in the file (`FILE: levels.0.width: ...`): the
    file is what the user named, a trial's config.yaml or a checkpoint whose config it records."""
    try:
        return read()
    except ConfigErrors as exc:
        raise ConfigErrors(ConfigError(str(path), f"{e.path}: {e.message}" if e.path and e.path != str(path)
                                       else e.message) for e in exc.errors) from None

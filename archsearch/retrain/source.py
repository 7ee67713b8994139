"""What `archsearch train` trains: one fixed space (one architecture, one training config, and
the data, validation and timing settings), found from what the user names.

    job = train_job("search_spaces/train_digits.yaml")                       # a space file without distributions
    job = train_job("my_unet.yaml", space_file="search_spaces/quickstart.yaml")   # a U-Net config, under a space's settings
    job = train_job("results/quickstart/trials/7/config.yaml")                # a trial's config, in its study
    job = train_job("results/quickstart", trial="knee", steps=600)            # a study's trial
    job.space, job.label, job.out_dir        # out_dir: the default output folder (None for a file)

The kind of source is detected (archsearch.schema.files.file_kind), never named:

- **a space file** without distributions: as written.
- **a U-Net config** (a trial's `config.yaml`, or one written by hand): the data, eval and
  measure sections and the training settings come from `space_file` when it is given; else, for
  a file at `STUDY_DIR/trials/<n>/config.yaml` beside `STUDY_DIR/space.yaml`, from the study: its
  space's sections and trial n's own recorded training settings (the `train` user attribute: the
  values the trial was sampled with, not the space's distributions); else it is an error that
  asks for `--space`.
- **a study folder** and `trial` (a number, or `knee`: archsearch.export.source.select_trial):
  that trial's recorded config and training settings, under the study's `space.yaml`.

Overrides, in order: `sets` (`--set path=value`, named as in a space file: `train.lr`,
`architecture.levels.0.width`, `data.image_size`), then `steps` (the new budget; it drops a
`train.seconds` limit unless `seconds` is given), then `seconds`. The result is validated as a
space file is, so every problem is a `path: message` line; a field still holding a distribution
(a `--space` whose training settings are searched) is refused at its path.

A study trial trains into `STUDY_DIR/trials/<n>/train-<steps>/` by default (`TrainJob.out_dir`);
the files the search wrote for the trial (`TrainJob.protected`) are never to be overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConfigErrors
from ..export.source import CHECKPOINT_NAME, study_trial
from ..schema.files import file_kind
from ..schema.loading import read_study_file, read_yaml
from ..schema.paths import ARCHITECTURE, SECTIONS, TRAIN, apply_sets, qualified
from ..schema.space import SearchSpace, load_space, space_from_dict, walk_distributions
from ..schema.train import TrainConfig
from ..schema.unet import UNetConfig
from ..search.study_files import SPACE_NAME, read_space

__all__ = ["TrainJob", "train_job", "TRIAL_FILES"]

# What the search keeps in trials/<n>/ (archsearch.search.records, archsearch.trial).
TRIAL_FILES = (CHECKPOINT_NAME, "metrics.json", "config.yaml", "samples.png")


@dataclass(frozen=True)
class TrainJob:
    """One network to train: a space without distributions, what to call it, and the study
    trial it comes from (None for a file)."""

    space: SearchSpace
    label: str
    study_dir: Path | None = None
    trial: int | None = None

    @property
    def config(self) -> UNetConfig:
        return self.space.fixed_architecture()

    @property
    def train(self) -> TrainConfig:
        return self.space.fixed_train()

    @property
    def trial_dir(self) -> Path | None:
        return None if self.trial is None else self.study_dir / "trials" / str(self.trial)

    @property
    def out_dir(self) -> Path | None:
        """The default output folder: `trials/<n>/train-<steps>/` for a trial, None for a file."""
        return None if self.trial_dir is None else self.trial_dir / f"train-{self.train.steps}"

    @property
    def protected(self) -> tuple[Path, ...]:
        """The trial's own files, which a run must not write."""
        return () if self.trial_dir is None else tuple(self.trial_dir / name for name in TRIAL_FILES)


def train_job(source: str | Path, trial: str | None = None, space_file: str | Path | None = None,
              sets: dict[str, Any] | None = None, steps: int | None = None, seconds: float | None = None) -> TrainJob:
    """The job `source` names (see the module docstring); raises ConfigErrors for bad input."""
    source = Path(source)
    overrides = _with_budget(sets, steps, seconds)
    if source.is_dir():
        from ..search.storage import JOURNAL_NAME

        if not (source / JOURNAL_NAME).exists():
            raise ConfigErrors([ConfigError(str(source), f"is a folder, but not a study folder (no {JOURNAL_NAME}); give "
                                                         "a space file, a U-Net config, or a study folder with --trial")])
        if trial is None:
            raise ConfigErrors([ConfigError("--trial", f"{source} is a study folder: name a trial number or `knee`")])
        if space_file is not None:
            raise ConfigErrors([ConfigError("--space", f"a study trial trains under its study's {SPACE_NAME}; drop "
                                                       "--space (or train the trial's config.yaml under another space)")])
        return _study_job(source, trial, overrides)
    if trial is not None:
        raise ConfigErrors([ConfigError("--trial", f"{source} is a file, not a study folder; drop --trial")])
    if not source.exists():
        raise ConfigErrors([ConfigError(str(source), "no such file (give a space file, a U-Net config, or a study "
                                                     "folder with --trial)")])
    data = read_yaml(source)
    kind = file_kind(data)
    if kind == "ablation":
        raise ConfigErrors([ConfigError(str(source), "is an ablation file; `archsearch ablate` runs it (`archsearch "
                                                     "train` takes a space file, a U-Net config or a study trial)")])
    if kind == "space":
        if space_file is not None:
            raise ConfigErrors([ConfigError("--space", f"{source} is a space file, with data and train sections of its "
                                                       "own; drop --space")])
        space = load_space(source, overrides)
        if not space.is_fixed():
            raise ConfigErrors([ConfigError(str(source), "has distributions; `archsearch train` runs one fixed "
                                                         "architecture (use `archsearch run` to search, or fix the "
                                                         "values with --set)")])
        return TrainJob(space, f"space file {source}")
    return _config_job(source, data, space_file, overrides)


def _with_budget(sets: dict[str, Any] | None, steps: int | None, seconds: float | None) -> dict[str, Any]:
    out = dict(sets or {})
    if steps is not None:
        out[qualified(TRAIN, "steps")] = steps
        out[qualified(TRAIN, "seconds")] = seconds  # --steps replaces the budget: no time limit left over
    elif seconds is not None:
        out[qualified(TRAIN, "seconds")] = seconds
    return out


def _config_job(source: Path, architecture: dict[str, Any], space_file, overrides: dict[str, Any]) -> TrainJob:
    if space_file is not None:
        space_data = read_study_file(space_file)
        space = _compose(space_data, architecture, space_data.get(TRAIN) or {}, overrides, f"--space {space_file}",
                         config_file=source)
        return TrainJob(space, f"config {source} under {space_file}")
    found_in = _study_of(source)
    if found_in is None:
        raise ConfigErrors([ConfigError(str(source), "is a U-Net config, which says nothing of the data, training "
                                                     "and validation; pass --space SPACE_FILE to train it under a "
                                                     "space file's (or give a study folder with --trial N)")])
    study_dir, number = found_in
    _, found = study_trial(study_dir, str(number))
    space = _compose(read_space(study_dir, required=True), architecture, _recorded(found, TRAIN, number), overrides,
                     str(study_dir / SPACE_NAME), config_file=source)
    return TrainJob(space, f"config {source} (trial {number} of {study_dir})", study_dir, number)


def _study_of(source: Path) -> tuple[Path, int] | None:
    """(STUDY_DIR, n) for a file at STUDY_DIR/trials/<n>/ beside STUDY_DIR/space.yaml, else None."""
    folder = source.resolve().parent
    study_dir = folder.parent.parent
    if not (folder.name.isdigit() and folder.parent.name == "trials" and (study_dir / SPACE_NAME).exists()):
        return None
    return (study_dir if source.is_absolute() else Path(os.path.relpath(study_dir))), int(folder.name)


def _study_job(study_dir: Path, which: str, overrides: dict[str, Any]) -> TrainJob:
    number, found = study_trial(study_dir, which)
    space_data = read_space(study_dir, required=True)
    config, train = _recorded(found, "config", number), _recorded(found, TRAIN, number)
    space = _compose(space_data, config, train, overrides, str(study_dir / SPACE_NAME))
    label = f"trial {number}{' (the knee)' if which == 'knee' else ''} of {study_dir}"
    return TrainJob(space, label, study_dir, number)


def _in_file(error: ConfigError, config_file: Path) -> ConfigError:
    """An architecture problem of a config file, located in that file (`FILE: levels.0.width: ...`)."""
    prefix = f"{ARCHITECTURE}."
    if error.path == ARCHITECTURE or not error.path.startswith(prefix):
        return error if error.path != ARCHITECTURE else ConfigError(str(config_file), error.message)
    return ConfigError(str(config_file), f"{error.path[len(prefix):]}: {error.message}")


def _recorded(trial, key: str, number: int) -> dict[str, Any]:
    value = trial.user_attrs.get(key)
    if not isinstance(value, dict):
        what = "config" if key == "config" else "training settings"
        raise ConfigErrors([ConfigError("--trial", f"{number}: the trial records no {what} (it failed before "
                                                   f"sampling them: {trial.user_attrs.get('fail_reason', 'no reason')})")])
    return value


def _compose(space_data: dict[str, Any], architecture: dict[str, Any], train: dict[str, Any],
             overrides: dict[str, Any], origin: str, config_file: Path | None = None) -> SearchSpace:
    """A space of `space_data`'s data, eval and measure sections (and device), with this
    architecture and these training settings; `origin` says where a distribution came from, and
    the architecture's problems name `config_file` (a U-Net config the user gave) when it is one."""
    study = space_data.get("study") if isinstance(space_data.get("study"), dict) else {}
    data = {k: space_data[k] for k in ("data", "eval", "measure") if k in space_data}
    data["study"] = {k: study[k] for k in ("name", "device") if k in study}
    data[ARCHITECTURE], data[TRAIN] = architecture, train
    try:
        space = space_from_dict(apply_sets(data, overrides))
    except ConfigErrors as exc:
        if config_file is None or any(path.startswith(f"{ARCHITECTURE}.") for path in overrides):
            raise
        raise ConfigErrors(_in_file(error, config_file) for error in exc.errors) from None
    searched = [(section, path, node) for section in SECTIONS for path, node in walk_distributions(getattr(space, section))]
    if searched:
        raise ConfigErrors([ConfigError(qualified(section, path), f"is searched in {origin} ({node}); `archsearch "
                                                                  f"train` runs one fixed network: fix it with --set "
                                                                  f"{qualified(section, path)}=VALUE")
                            for section, path, node in searched])
    return space

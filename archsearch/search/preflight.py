"""What a study checks before it writes its first byte: bad input is exit 2 with nothing created.

`archsearch run` and `archsearch ablate` call `preflight` before they create the study folder,
open the storage or write `space.yaml`, so that everything a user can get wrong is found once,
up front, instead of as one failed trial after another:

- the results folder can be created (`--results-dir` is not a file, the study folder neither);
- the storage URL is well formed (whether its server answers is found when it is opened: an
  unreachable server is a failure, exit 1, but still before anything is written), and a
  grpc:// one has grpcio to speak to its proxy;
- the device exists (`cuda` on a machine without a GPU is bad input, not an `error:` trial);
- the data can be read (a missing folder, an empty one, a missing `.npy` file...) and the
  validation protocol can be built from it (enough held-out images for `eval.timesteps`);
- the data, the validation inputs and the largest network fit the machine's memory (estimated
  from image counts, file headers and the network's plan, before anything is read or
  allocated: archsearch.search.memory); what does not fit is refused, naming the field to lower.

`check_inputs` makes these checks without reading the data set (`archsearch validate`: seconds,
whatever the data); `preflight` then reads it (`read=True`), so that what only a full read finds
(an image array's values out of range) still stops `run` before it writes, and keeps it in the
returned `LazyContext`, so a single-process study does not read it twice. `spec` (the space or
ablation) lets the memory check count the network, the measured batch and an ablation's variants.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConfigErrors
from ..urls import check_storage_url

__all__ = ["study_folder", "check_inputs", "preflight"]


def study_folder(results_dir: str | Path, name: str) -> Path:
    """`<results_dir>/<name>`, checked to be a folder that can be created; creates nothing."""
    results_dir = Path(results_dir)
    study_dir = results_dir / name
    for path in (study_dir, results_dir, *results_dir.parents):
        if not path.exists():
            continue
        where = "study.name" if path == study_dir else "--results-dir"
        if not path.is_dir():
            raise ConfigErrors([ConfigError(where, f"{path} is a file, not a folder; "
                                                   f"{'use another study name' if path == study_dir else 'give a folder'}")])
        if path != study_dir and not os.access(path, os.W_OK | os.X_OK):
            raise ConfigErrors([ConfigError("--results-dir", f"cannot create folders in {path} (permission denied)")])
        break
    return study_dir


def preflight(results_dir: str | Path, name: str, storage: str | None, data_cfg, eval_cfg,
              train_settings: dict[str, Any], device: str, device_path: str = "study.device",
              on_load: Callable[[list[str]], None] | None = None, spec=None):
    """Check everything above; returns (the study folder, a LazyContext holding the data)."""
    study_dir = study_folder(results_dir, name)
    if storage:
        try:
            check_storage_url(storage)
        except ConfigError as exc:
            raise ConfigErrors([exc]) from None
        if storage.startswith("grpc://"):
            from .proxy import require_grpc

            require_grpc("--storage", "a grpc:// storage")
    return study_dir, check_inputs(data_cfg, eval_cfg, train_settings, device, device_path, on_load, spec=spec,
                                   read=True)


def check_inputs(data_cfg, eval_cfg, train_settings: dict[str, Any], device: str, device_path: str = "study.device",
                 on_load: Callable[[list[str]], None] | None = None, spec=None, read: bool = False):
    """The device, the data, its memory and the validation protocol (what `archsearch validate`
    checks); returns the LazyContext that holds (`read`: has read) the data. `on_load` hears what
    was read (ImageData.describe); `spec` is the space or ablation the settings come from."""
    import torch

    from ..data import estimate_data, split_indices, split_sizes
    from ..device import resolve_device
    from ..evaluate import ValidationProtocol
    from ..schema.loading import validate_model
    from ..schema.paths import TRAIN
    from ..schema.train import TrainConfig
    from ..settings import resolve_run_settings
    from ..trial import LazyContext  # torch: only where trials run
    from .memory import check_memory

    # The schedule fixes the validation timesteps; it cannot be searched, so any trial's will do.
    fixed = {k: v for k, v in train_settings.items() if k in ("schedule", "num_timesteps")}
    context = LazyContext(data_cfg, eval_cfg, device, device_path, on_load)
    try:
        train_cfg = validate_model(TrainConfig, fixed, TRAIN)
        resolved = resolve_device(device, device_path)
        estimate = estimate_data(data_cfg)  # counts and headers: nothing decoded
        if estimate.images < 2:
            split_indices(estimate.images, data_cfg.val_fraction, data_cfg.split_seed)  # its error
        check_memory(estimate, data_cfg, eval_cfg, train_settings, resolved, spec)
        _check_quality(eval_cfg.quality, data_cfg, estimate.images)
        # The protocol's rules, on stand-ins of the validation images (a pixel each): its errors
        # come before the images are read.
        num_val = split_sizes(estimate.images, data_cfg.val_fraction)[1]
        schedule = resolve_run_settings(train_cfg, resolved).schedule
        ValidationProtocol(torch.zeros(min(num_val, eval_cfg.num_images), 1, 1, 1), None, schedule, eval_cfg)
        if read:
            context(train_cfg)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    return context


def _check_quality(cfg, data_cfg, images: int) -> None:
    """The sample-quality phase can run: its feature network is at hand (offline: a missing
    weights file is bad input), and the reference split holds enough images for its metrics."""
    if cfg is None:
        return
    from ..data import split_sizes
    from ..quality.features import check_features

    problems = check_features(cfg, data_cfg.source)
    train, val = split_sizes(images, data_cfg.val_fraction)
    count = min(train if cfg.reference == "train" else val, cfg.reference_samples or images)
    least = cfg.k + 1 if {"sample_precision", "sample_recall"} & set(cfg.metrics) else 2
    if count < least:
        problems.append(ConfigError("eval.quality.reference", f"the {cfg.reference} split holds {count} images; "
                                                              f"the quality metrics need at least {least}"))
    if problems:
        raise ConfigErrors(problems)

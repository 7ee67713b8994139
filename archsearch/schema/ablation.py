"""The ablation file: a base U-Net, named variants that each change a few of its fields, seeds.

    study:    {name, device, timeout}            # name defaults to the file's stem
    base:     {base: seed, levels: [...]}        # a UNetConfig, or `base: PRESET` + overrides
    variants:
      add-skips:
        description: add skips instead of concatenating them
        skip: {combine: add, project: true}      # merged into the base like overrides into a preset
      attention-everywhere:
        levels.0.attention: true                 # a dotted key sets one field, also inside a list
      mp-blocks:
        block: {kind: mp}
        train: {lr: 1.0e-2}                      # a variant's own training settings, over `train`
    seeds: 3                                     # every network is trained with seeds 0, 1, 2
    data / train / eval / measure                # as in a space file, fixed values only

A variant is written as overrides of the base: nested mappings merge key by key (a mapping
that switches `kind` replaces the old one whole, lists are replaced whole), and a dotted key
(`levels.1.attention`) reaches one field without rewriting its list. `description` is the only
key that is not an override of the network; `train` (optional) overrides the file's training
settings for that variant alone, for a design that its authors train differently (EDM2's
magnitude-preserving blocks at a higher learning rate): the comparison is then of the network and
its training together, and the variant's description should say so. `image_size` and
`in_channels` come from `data` and cannot vary.

Every variant is compared with the base on the validation loss and the training throughput
(`ABLATION_OBJECTIVES`), and on sample quality when the file has an `eval.quality` section or
`archsearch ablate --quality` asks for it (`with_quality`): then on each metric of
`eval.quality.metrics` too (`compared_metrics`, in the registry's order).

Loading resolves and plans every network up front, so a typo in the fifth variant fails before
the first trial trains; errors read `variants.<name>.<field>: message`. Imports no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..errors import ConfigError, ConfigErrors, excerpt
from ..metrics import QUALITY_METRICS
from ._base import MAX_SECONDS, Model
from .data import DataConfig, Digits
from .loading import deep_merge, read_study_file, resolve_base, unet_config_from_dict, validate_model
from .measure import MeasureConfig, reference_architecture
from .paths import get_path, set_path
from .study import Device, StudyName
from .train import EvalConfig, TrainConfig
from .unet import UNetConfig

__all__ = ["AblationStudy", "AblationSpec", "BASE", "ABLATION_OBJECTIVES", "compared_metrics", "load_ablation",
           "ablation_from_dict", "apply_overrides"]

BASE = "base"  # the reference's row name; no variant may take it

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*")
_FROM_DATA = ("image_size", "in_channels")
_NOT_NETWORK = ("description", "train")  # the keys of a variant that are not overrides of the base
_MISSING = object()


class AblationStudy(Model):
    """Where the ablation is kept and what it runs on (the trial count follows from the file)."""

    name: StudyName = Field("ablation", description="Study name; the study folder is <results-dir>/<name>.")
    device: Device = Field("auto", description="auto, cpu, cuda or cuda:N.")
    timeout: float | None = Field(None, gt=0, le=MAX_SECONDS,
                                  description="Stop starting trials after this many seconds (rerun to resume).")



class AblationSpec(Model):
    """A validated ablation file. `base` is stored resolved (preset expanded, image size and
    channels from `data`); `variants` as written."""

    study: AblationStudy = Field(default_factory=AblationStudy, description="The study.")
    base: dict[str, Any] = Field(
        description="The reference U-Net: UNetConfig fields, or `base: PRESET` + overrides. image_size and "
                    "in_channels default to the data's.",
    )
    variants: dict[str, dict[str, Any]] = Field(
        min_length=1,  # required: an ablation compares at least one variant with the base
        description="name -> overrides of the base (nested mappings or dotted keys such as levels.1.attention), "
                    "an optional `description` and an optional `train`: training settings of this variant alone.",
    )
    seeds: int = Field(3, ge=1, le=100, description="Training seeds per network: 0 .. seeds-1. Two or more give confidence intervals.")
    data: DataConfig = Field(default_factory=Digits, description="The images.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings (train.seed comes from `seeds`).")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="The validation protocol.")
    measure: MeasureConfig = Field(default_factory=MeasureConfig, description="The timing protocol.")

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            if name == BASE:
                raise ValueError(f"{excerpt(name)} names the reference; give the variant another name")
            if not _NAME.fullmatch(name):
                raise ValueError(f"variant name {excerpt(name)}: use letters, digits, '_', '-' and '+' (no dots)")
        return value

    @property
    def names(self) -> list[str]:
        """The base first, then the variants in file order."""
        return [BASE, *self.variants]

    @property
    def num_trials(self) -> int:
        return len(self.names) * self.seeds

    def description(self, name: str) -> str:
        if name == BASE:
            return "the reference network"
        return str(self.variants[name].get("description", ""))

    def architecture(self, name: str) -> dict[str, Any]:
        """The full architecture mapping of the base or of a variant."""
        if name == BASE:
            return dict(self.base)
        overrides = {k: v for k, v in self.variants[name].items() if k not in _NOT_NETWORK}
        return apply_overrides(self.base, overrides)

    def variant_configs(self) -> list[tuple[str, UNetConfig]]:
        """(name, validated and planned config) for the base and every variant."""
        return [(name, unet_config_from_dict(self.architecture(name), prefix=_where(name))) for name in self.names]

    def train_config(self, seed: int, name: str = BASE) -> TrainConfig:
        """The training settings of network `name` at `seed`: the file's, under the variant's own `train`."""
        own = {} if name == BASE else self.variants[name].get("train") or {}
        if not own:
            return self.train.model_copy(update={"seed": seed})
        merged = deep_merge(self.train.model_dump(mode="json"), {**own, "seed": seed})
        return validate_model(TrainConfig, merged, f"{_where(name)}.train")

    def has_own_training(self, name: str) -> bool:
        return name != BASE and bool(self.variants[name].get("train"))

    @property
    def compared(self) -> list[str]:
        """The metrics every variant is compared with the base on (see `compared_metrics`)."""
        return compared_metrics(self.eval.quality.metrics if self.eval.quality is not None else ())

    def with_quality(self, asked: bool = False) -> AblationSpec:
        """This ablation, measuring sample quality when `asked` (`ablate --quality`): with
        eval.quality's defaults where the file has no such section."""
        if not asked or self.eval.quality is not None:
            return self
        from .quality import QualityConfig

        return self.model_copy(update={"eval": self.eval.model_copy(update={"quality": QualityConfig()})})

    def trial_space(self, name: str, seed: int):
        """A space file without distributions for one network and seed: what one trial runs."""
        from .space import space_from_dict

        return space_from_dict({
            "study": {"name": self.study.name, "trials": self.num_trials, "sampler": {"kind": "random"},
                      "device": self.study.device, "checkpoints": "none"},  # it compares; it keeps no weights
            "data": self.data.model_dump(mode="json"),
            "train": self.train_config(seed, name).model_dump(mode="json"),
            "eval": self.eval.model_dump(mode="json"),
            "measure": self.measure.model_dump(mode="json"),
            "architecture": self.architecture(name),
            "objectives": [{"metric": m} for m in ABLATION_OBJECTIVES],
        })


# Every ablation study optimizes these (it compares, it does not search): the raw speed, as ablation
# studies have since before the speed reference (issue 12), so that all of them resume; the paired
# comparison times the variants of one seed in turn, which spares it much of the load a search sees.
ABLATION_OBJECTIVES = ("val_loss", "train_throughput")


def compared_metrics(measured: Iterable[str] = ()) -> list[str]:
    """The metrics an ablation compares: its objectives, then the quality metrics among
    `measured` (the registry's, in its order), which each run records but no study optimizes."""
    measured = set(measured)
    return [*ABLATION_OBJECTIVES, *(m for m in QUALITY_METRICS if m in measured)]


def apply_overrides(arch: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`arch` with each override applied: plain keys by `deep_merge`, dotted keys at their path
    (a mapping merged into the mapping there, anything else replacing it)."""
    out = dict(arch)
    for key, value in overrides.items():
        if "." not in key:
            out = deep_merge(out, {key: value})
            continue
        current = get_path(out, key, _MISSING)
        merged = value if current is _MISSING else deep_merge({"v": current}, {"v": value})["v"]
        out = set_path(out, key, merged)
    return out


def load_ablation(path: str | Path, sets: dict[str, Any] | None = None) -> AblationSpec:
    """Read and validate an ablation file; `sets` are `--set path=value` overrides."""
    data = read_study_file(path, sets)
    return ablation_from_dict(data)


def ablation_from_dict(data: dict[str, Any]) -> AblationSpec:
    """Validate an ablation mapping: the sections, then the base and every variant as networks."""
    errors = _distributions(data)
    if isinstance(data.get("train"), dict) and "seed" in data["train"]:
        errors.append(ConfigError("train.seed", "is set by `seeds` (every network trains with seeds 0 .. seeds-1); remove it"))
    if errors:
        raise ConfigErrors(errors)
    spec = validate_model(AblationSpec, data)

    base = _complete_base(spec, errors)
    base_config = _planned(base, BASE, errors)
    spec = spec.model_copy(update={"base": base})
    seen: dict[str, str] = {}
    if base_config is not None:
        seen[base_config.model_dump_json() + spec.train_config(0).model_dump_json()] = BASE
    for name, variant in spec.variants.items():
        where = _where(name)
        description = variant.get("description", "")
        if not isinstance(description, str):
            errors.append(ConfigError(f"{where}.description", f"must be text (got {excerpt(description)})"))
        for key in _FROM_DATA:
            if key in variant:
                data_key = "image_size" if key == "image_size" else "channels"
                errors.append(ConfigError(f"{where}.{key}", f"is set by data.{data_key} for every network; "
                                                            "run another ablation for another image size"))
        if any(key in variant for key in _FROM_DATA):
            continue
        try:
            arch = spec.architecture(name)
        except ConfigErrors as exc:  # a dotted key into a list that is too short
            errors += exc.prefixed(where).errors
            continue
        own_train = variant.get("train")
        if own_train is not None:
            if not isinstance(own_train, dict) or not own_train:
                errors.append(ConfigError(f"{where}.train", f"must be a mapping of training settings (got {excerpt(own_train)})"))
                continue
            if "seed" in own_train:
                errors.append(ConfigError(f"{where}.train.seed", "is set by `seeds` for every network; remove it"))
                continue
            try:
                train = spec.train_config(0, name)
            except ConfigErrors as exc:
                errors += exc.errors
                continue
        else:
            train = spec.train_config(0)
        config = _planned(arch, name, errors)
        if config is None:
            continue
        twin = seen.setdefault(config.model_dump_json() + train.model_dump_json(), name)
        if twin != name:
            what = "the base" if twin == BASE else f"variant {excerpt(twin)}"
            errors.append(ConfigError(where, f"builds the same network as {what} and trains it alike; change a field or drop it"))
    try:
        reference_architecture(spec.measure, spec.data.image_size, spec.data.channels)
    except ConfigErrors as exc:
        errors += exc.errors
    if errors:
        raise ConfigErrors(errors)
    return spec


def _where(name: str) -> str:
    return BASE if name == BASE else f"variants.{name}"


def _complete_base(spec: AblationSpec, errors: list[ConfigError]) -> dict[str, Any]:
    """Merge the preset, then take image size and channels from `data` unless written."""
    try:
        base = resolve_base(spec.base, BASE)
    except ConfigErrors as exc:
        errors += exc.errors
        return dict(spec.base)
    for key, data_key, value in (("image_size", "image_size", spec.data.image_size), ("in_channels", "channels", spec.data.channels)):
        if key in spec.base and spec.base[key] != value:
            errors.append(ConfigError(f"base.{key}", f"{spec.base[key]} but data.{data_key} is {value}; make them equal or drop this field"))
        base[key] = value
    return base


def _planned(arch: dict[str, Any], name: str, errors: list[ConfigError]) -> UNetConfig | None:
    try:
        return unet_config_from_dict(arch, prefix=_where(name))
    except ConfigErrors as exc:
        errors += exc.errors
        return None


def _distributions(data: dict[str, Any]) -> list[ConfigError]:
    """Search distributions have no place here: every network of an ablation is fixed."""
    from .space import walk_distributions

    errors = []
    sections = [("base", data.get("base")), ("train", data.get("train"))]
    variants = data.get("variants")
    if isinstance(variants, dict):
        sections += [(f"variants.{name}", value) for name, value in variants.items()]
    for prefix, tree in sections:
        for path, _ in walk_distributions(tree if isinstance(tree, (dict, list)) else {}):
            errors.append(ConfigError(f"{prefix}.{path}" if path else prefix,
                                      "a distribution, but every network of an ablation is fixed; give one value "
                                      "(or add a variant per value)"))
    return errors

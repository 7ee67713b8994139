"""The space file: what `archsearch run`, `train` and `validate` read.

    study:        {name, trials, timeout, sampler, pruner, stopping, seed, device, ...}
    data:         the images (archsearch.schema.data)
    train:        training settings; any field may be a distribution
    eval:         the validation protocol
    measure:      the timing protocol
    objectives:   [{metric: val_loss}, {metric: train_throughput}]   (the default)
    constraints:  ["params <= 5e6", "train_throughput >= 200"]
    architecture: a UNetConfig, optionally `base: PRESET` + overrides; any field may be a
                  distribution, `base` too (`{choice: [PRESET, ...]}`: the overrides apply to
                  the one drawn); `depth` (a space-only key) keeps the first `depth` levels.

A file without distributions describes one trial (`archsearch train FILE`). Loading checks
every fixed value and every candidate of every distribution against the field it sets, so a
typo fails before any trial runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, model_validator

from ..errors import ConfigError, ConfigErrors, excerpt
from ..metrics import METRICS, OBJECTIVE_METRICS
from ._base import Model, validate_value
from .data import DataConfig, Digits
from .distributions import as_distribution, is_distribution
from .loading import read_study_file, resolve_base, validate_model
from .measure import MeasureConfig, architecture_at, reference_architecture
from .paths import ARCHITECTURE, SECTIONS, TRAIN, qualified, set_path
from .study import DEFAULT_OBJECTIVES, Constraint, Objective, StudyConfig, baseline_label
from .train import EvalConfig, TrainConfig
from .unet import UNetConfig

__all__ = ["SearchSpace", "load_space", "space_from_dict", "field_type", "walk_distributions", "baseline_architectures"]


def default_objectives(reference: Any = "auto") -> list[Objective]:
    """The objectives of a space that names none: the normalized speed needs the reference network."""
    if reference is None:
        return [Objective(metric="val_loss"), Objective(metric="train_throughput")]
    return list(DEFAULT_OBJECTIVES)


class SearchSpace(Model):
    """A validated space file. `architecture` and `train` keep their distributions as written;
    `archsearch.search.sampling` turns them into concrete configs."""

    study: StudyConfig = Field(default_factory=StudyConfig, description="The Optuna study.")
    data: DataConfig = Field(default_factory=Digits, description="The images.")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields; values may be distributions.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="The validation protocol.")
    measure: MeasureConfig = Field(default_factory=MeasureConfig, description="The timing protocol.")
    objectives: list[Objective] = Field(
        default_factory=lambda: list(DEFAULT_OBJECTIVES), min_length=1,
        description="What the study optimizes. Default: val_loss and train_throughput_normalized (the raw "
                    "train_throughput when measure.reference is null).",
    )
    constraints: list[Constraint] = Field(default_factory=list, description="Feasibility rules, e.g. 'params <= 5e6'.")
    architecture: dict[str, Any] = Field(
        default_factory=dict, description="A UNetConfig (or `base: PRESET` + overrides); values may be distributions, "
                                          "the base too: {choice: [PRESET, ...]}."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_objectives(cls, data: Any) -> Any:
        # The normalized speed needs the reference network: without one the default is the raw speed.
        if isinstance(data, dict) and "objectives" not in data and isinstance(data.get("measure"), dict) \
                and "reference" in data["measure"] and data["measure"]["reference"] is None:
            return {**data, "objectives": [o.model_dump() for o in default_objectives(None)]}
        return data

    @model_validator(mode="after")
    def _objectives_unique(self) -> SearchSpace:
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError("objectives: each metric may appear once")
        return self

    def is_fixed(self) -> bool:
        """No distribution anywhere: the file describes exactly one trial."""
        return not any(True for _ in walk_distributions(self.architecture)) and not any(
            True for _ in walk_distributions(self.train)
        )

    def fixed_architecture(self) -> UNetConfig:
        """The architecture of a space without distributions."""
        from .loading import unet_config_from_dict

        return unet_config_from_dict(_without_depth(self.architecture), prefix=ARCHITECTURE)

    def fixed_train(self) -> TrainConfig:
        return validate_model(TrainConfig, self.train, TRAIN)


def load_space(path: str | Path, sets: dict[str, Any] | None = None) -> SearchSpace:
    """Read and validate a space file; `sets` are `--set path=value` overrides."""
    data = read_study_file(path, sets)
    return space_from_dict(data)


def space_from_dict(data: dict[str, Any]) -> SearchSpace:
    """Validate a space mapping: sections, then every field and distribution candidate."""
    space = validate_model(SearchSpace, data)
    errors: list[ConfigError] = []
    if is_distribution(space.architecture.get("base")):
        arch = _check_base_choice(space, errors)
    else:
        arch = _complete_architecture(space, errors)
        errors += _check_tree(UNetConfig, arch, ARCHITECTURE, space_only={"depth"})
    errors += _check_depth(arch)
    if not errors and not any(True for _ in walk_distributions(arch)):
        # A fixed architecture is planned now, so its cross-field problems come with the rest.
        from .loading import unet_config_from_dict

        try:
            unet_config_from_dict(_without_depth(arch), prefix=ARCHITECTURE)
        except ConfigErrors as exc:
            errors += exc.errors
    errors += _check_tree(TrainConfig, space.train, TRAIN)
    for key in ("schedule", "num_timesteps"):
        if is_distribution(space.train.get(key)):
            errors.append(ConfigError(qualified(TRAIN, key), "cannot be searched: validation losses under different noise "
                                                      "schedules do not compare; fix it and run one study per schedule"))
    if errors:
        raise ConfigErrors(errors)
    space = space.model_copy(update={ARCHITECTURE: arch})
    if space.is_fixed():
        space.fixed_architecture()  # the planner's cross-field rules, at load time
        space.fixed_train()
    space = with_quality(space)
    _check_sampler(space)
    _check_stopping(space)
    _check_reference(space)
    baseline_architectures(space)
    return space


def baseline_architectures(space: SearchSpace) -> list[tuple[str, UNetConfig]]:
    """(label, planned UNetConfig) of every `study.baselines` entry at the data's image size and
    channels. They train under the space's training settings, so those must be fixed: a searched
    train field is an error. ConfigErrors located at `study.baselines.<i>`."""
    errors: list[ConfigError] = []
    out = []
    for i, entry in enumerate(space.study.baselines):
        try:
            config = architecture_at(entry, space.data.image_size, space.data.channels, f"study.baselines.{i}",
                                     why="a baseline trains on the study's images")
            out.append((baseline_label(entry, i), config))
        except ConfigErrors as exc:
            errors += exc.errors
    if space.study.baselines:
        searched = [qualified(TRAIN, path) for path, _ in walk_distributions(space.train)]
        if searched:
            errors.append(ConfigError("study.baselines", f"{searched[0]} is searched, but a baseline trains under the "
                                                         "study's one training protocol; fix it, or drop study.baselines"))
    if errors:
        raise ConfigErrors(errors)
    return out


def with_quality(space: SearchSpace, asked: bool = False) -> SearchSpace:
    """`space` with sample quality on when it is asked for: by `asked` (`--quality`), or by an
    objective or a constraint that names a quality metric; `eval.quality`'s defaults where the
    file has no such section. A quality metric named but left out of `eval.quality.metrics` is
    an error."""
    quality = space.eval.quality
    named = [(path, item) for path, item in _metric_uses(space) if METRICS[item.metric].quality]
    if quality is None and (asked or named):
        from .quality import QualityConfig

        quality = QualityConfig()
        space = space.model_copy(update={"eval": space.eval.model_copy(update={"quality": quality})})
    errors = [ConfigError(path, f"{item.metric} is not among eval.quality.metrics ({', '.join(quality.metrics)}); "
                                "add it there") for path, item in named if item.metric not in quality.metrics]
    if errors:
        raise ConfigErrors(errors)
    return space


def _complete_architecture(space: SearchSpace, errors: list[ConfigError]) -> dict[str, Any]:
    """Merge the preset, then take image size and channels from `data` unless written."""
    try:
        arch = resolve_base(space.architecture, ARCHITECTURE)
    except ConfigErrors as exc:
        errors += exc.errors
        # Without `base`, so that the unknown preset is reported once, not also as an unknown field.
        return {k: v for k, v in space.architecture.items() if k != "base"}
    written = {k for k in ("image_size", "in_channels") if k in space.architecture}
    for key, data_value in (("image_size", space.data.image_size), ("in_channels", space.data.channels)):
        value = arch.get(key)
        if key not in written or value is None:
            arch[key] = data_value
        elif not is_distribution(value) and value != data_value:
            data_key = "image_size" if key == "image_size" else "channels"
            errors.append(
                ConfigError(qualified(ARCHITECTURE, key), f"{value} but data.{data_key} is {data_value}; make them equal or drop this field")
            )
    return arch


def _check_base_choice(space: SearchSpace, errors: list[ConfigError]) -> dict[str, Any]:
    """`base: {choice: [PRESET, ...]}`: the overrides are checked on top of every candidate base
    (an error says which), and the architecture is kept unmerged, `base` a parameter decided
    first, so that a trial merges the overrides into the base it drew."""
    where = qualified(ARCHITECTURE, "base")
    try:
        dist = as_distribution(space.architecture["base"], where)
    except ConfigErrors as exc:
        errors += exc.errors
        return {}
    if dist.kind != "choice":
        errors.append(ConfigError(where, f"a base is chosen from presets with {{choice: [...]}}, not drawn from a {dist.kind} range"))
        return {}
    for k, base in enumerate(dist.choices):
        one = space.model_copy(update={ARCHITECTURE: {**space.architecture, "base": base}})
        found: list[ConfigError] = []
        arch = _complete_architecture(one, found)
        found += _check_tree(UNetConfig, arch, ARCHITECTURE, space_only={"depth"})
        if not found and not any(True for _ in walk_distributions(arch)):
            from .loading import unet_config_from_dict

            try:
                unet_config_from_dict(_without_depth(arch), prefix=ARCHITECTURE)
            except ConfigErrors as exc:
                found += exc.errors
        for e in found:
            path = f"{where}.choice.{k}" if e.path == "base" or e.path == where else e.path
            errors.append(ConfigError(path, e.message if path != e.path else f"{e.message} (with base {excerpt(base)})"))
    return {"image_size": space.data.image_size, "in_channels": space.data.channels, **space.architecture}


def _check_tree(model: type[BaseModel], tree: dict[str, Any], prefix: str, space_only=frozenset()) -> list[ConfigError]:
    """Validate each distribution's candidates against its field, and the fixed values as a whole
    (with every distribution at its first candidate)."""
    errors: list[ConfigError] = []
    first = tree
    for path, node in list(walk_distributions(tree)):
        if path.split(".")[0] in space_only:
            continue
        where = f"{prefix}.{path}"
        try:
            dist = as_distribution(node, where)
        except ConfigErrors as exc:
            errors += exc.errors
            continue
        try:
            tp = field_type(model, path)
        except KeyError as exc:
            errors.append(ConfigError(where, f"no such field ({exc.args[0]}); `archsearch schema` lists the fields"))
            continue
        for k, candidate in enumerate(dist.candidates()):
            try:
                validate_value(tp, candidate)
            except ConfigErrors as exc:
                label = f"choice.{k}" if dist.kind == "choice" else ("low" if k == 0 else "high")
                for e in exc.errors:
                    message = e.message if "(got " in e.message else f"{e.message} (got {excerpt(candidate)})"
                    errors.append(ConfigError(f"{where}.{label}" + (f".{e.path}" if e.path else ""), message))
        first = set_path(first, path, dist.candidates()[0])
    fixed = {k: v for k, v in first.items() if k not in space_only}
    try:
        validate_model(model, fixed, prefix)
    except ConfigErrors as exc:
        # Only problems with fixed values: those under a distribution were reported above.
        dist_paths = [p for p, _ in walk_distributions(tree)]
        for e in exc.errors:
            if not any(e.path == f"{prefix}.{p}" or e.path.startswith(f"{prefix}.{p}.") for p in dist_paths):
                errors.append(e)
    return errors


def _check_depth(arch: dict[str, Any]) -> list[ConfigError]:
    if "depth" not in arch:
        return []
    depth, levels = arch["depth"], arch.get("levels")
    if not isinstance(levels, list):
        return [ConfigError(qualified(ARCHITECTURE, "depth"), "needs `levels` written per level (depth keeps the first `depth` of them)")]
    try:
        values = as_distribution(depth, qualified(ARCHITECTURE, "depth")).candidates() if is_distribution(depth) else [depth]
    except ConfigErrors as exc:
        return exc.errors
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= len(levels)]
    if bad:
        return [ConfigError(qualified(ARCHITECTURE, "depth"), f"{excerpt(bad[0])} is not between 1 and the {len(levels)} levels written")]
    return []


# Points of a grid search at most: Optuna's GridSampler holds the whole grid in memory.
MAX_GRID_POINTS = 1_000_000


def _check_sampler(space: SearchSpace) -> None:
    kind = space.study.sampler.kind
    if kind == "grid":
        points = 1
        for section in SECTIONS:
            for path, node in walk_distributions(getattr(space, section)):
                dist = as_distribution(node)
                if dist.kind == "float" and dist.step is None:
                    raise ConfigErrors([ConfigError(qualified(section, path), "the grid sampler needs a `step` for float ranges")])
                points *= len(dist.choices) if dist.kind == "choice" else int((dist.high - dist.low) / dist.step + 1e-9) + 1
                if points > MAX_GRID_POINTS:
                    raise ConfigErrors([ConfigError(qualified(section, path), f"the grid has more than {MAX_GRID_POINTS:,} points "
                                                                        "from here on; use fewer values or another sampler")])
    if space.study.pruner.kind != "none" and len(space.objectives) > 1:
        raise ConfigErrors(
            [ConfigError("study.pruner", "Optuna's pruners work with one objective only; use kind: none or one objective")]
        )


def _check_stopping(space: SearchSpace) -> None:
    """Early stopping's cross-section rules: what it compares exists and is known at a rung (the
    rung's val_loss, which stands in for a quality objective there, and the metrics measured
    before training: not duration_s or train_loss), and every trial has a rung."""
    stopping = space.study.stopping
    if stopping.kind == "none":
        return
    errors = []
    if not any(o.metric == "val_loss" or METRICS[o.metric].quality for o in space.objectives):
        errors.append(ConfigError("study.stopping", f"{stopping.kind} compares trials by their validation loss at rungs, "
                                                    "but val_loss is not an objective; add {metric: val_loss} to "
                                                    "objectives or use kind: none"))
    known = ", ".join(m for m in OBJECTIVE_METRICS if METRICS[m].before_training)
    for path, item in _metric_uses(space):
        if item.metric != "val_loss" and not METRICS[item.metric].before_training and not METRICS[item.metric].quality:
            errors.append(ConfigError(path, f"{item.metric} is not known at a rung (only once training ends); "
                                            f"{stopping.kind} compares the rung's val_loss and what is measured "
                                            f"before training ({known}); drop it or use study.stopping: {{kind: none}}"))
    if space.study.pruner.kind != "none":
        errors.append(ConfigError("study.stopping", f"{stopping.kind} and study.pruner ({space.study.pruner.kind}) would "
                                                    "both stop trials; keep one: stopping: {kind: none} or "
                                                    "pruner: {kind: none}"))
    steps = space.train.get("steps", TrainConfig.model_fields["steps"].default)
    candidates = as_distribution(steps).candidates() if is_distribution(steps) else [steps]
    shortest = min(candidates)  # the fields were checked above: these are ints
    if stopping.min_steps >= shortest:
        where = "train.steps" if not is_distribution(steps) else "the shortest train.steps"
        errors.append(ConfigError("study.stopping.min_steps", f"{stopping.min_steps} is not below {where} ({shortest}): "
                                                              f"a trial would have no rung to stop at; use min_steps "
                                                              f"below {shortest}, or more train.steps"))
    if errors:
        raise ConfigErrors(errors)


def _metric_uses(space: SearchSpace) -> list[tuple[str, Objective | Constraint]]:
    """(path, item) of every objective and constraint: what names a metric."""
    return [(f"objectives.{i}.metric", o) for i, o in enumerate(space.objectives)] + \
           [(f"constraints.{i}", c) for i, c in enumerate(space.constraints)]


def _check_reference(space: SearchSpace) -> None:
    """The reference network builds at the data's shape, and exists when a metric needs it."""
    errors = []
    try:
        reference_architecture(space.measure, space.data.image_size, space.data.channels)
    except ConfigErrors as exc:
        errors += exc.errors
    if space.measure.reference is None:
        errors += [ConfigError(path, f"{item.metric} is timed against the reference network, but measure.reference "
                                     "is null; use measure.reference: auto, or train_throughput")
                   for path, item in _metric_uses(space) if METRICS[item.metric].needs_reference]
    if errors:
        raise ConfigErrors(errors)


def _without_depth(arch: dict[str, Any]) -> dict[str, Any]:
    """Apply a fixed `depth` (keep the first `depth` levels) and drop the key."""
    if "depth" not in arch:
        return arch
    out = {k: v for k, v in arch.items() if k != "depth"}
    if isinstance(out.get("levels"), list) and isinstance(arch["depth"], int):
        out["levels"] = out["levels"][: arch["depth"]]
    return out


def walk_distributions(tree: Any, prefix: str = ""):
    """Yield (dotted path, node) for every distribution in a nested mapping, in file order."""
    if is_distribution(tree):
        yield prefix[:-1], tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from walk_distributions(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from walk_distributions(value, f"{prefix}{i}.")


def field_type(model: type[BaseModel], path: str):
    """The annotated type of the field at a dotted path of a model (constraints included).

    Walks nested models, lists (an index step) and discriminated unions (the first variant that
    has the next field). Raises KeyError naming the part that does not exist.
    """
    from .paths import split_path

    tp: Any = model
    for part in split_path(path):
        tp = _unwrap(tp)
        if isinstance(part, int):
            if get_origin(tp) is not list:
                raise KeyError(f"{part} indexes something that is not a list")
            tp = get_args(tp)[0]
            continue
        models = [m for m in _models_of(tp) if part in m.model_fields]
        if not models:
            raise KeyError(f"unknown field {excerpt(part)}")
        if part == "kind" and len(models) > 1:
            # The tag of a discriminated union: any variant's tag is a valid value.
            tp = Literal[tuple(m.model_fields["kind"].default for m in models)]
            continue
        info = models[0].model_fields[part]
        tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        if info.discriminator:
            tp = Annotated[tp, Field(discriminator=info.discriminator)]
    return tp


def _unwrap(tp):
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, type(int | None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _models_of(tp) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if get_origin(tp) in (Union, type(int | None)):
        return [m for a in get_args(tp) for m in _models_of(_unwrap(a))]
    return []

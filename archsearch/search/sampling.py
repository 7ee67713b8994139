"""Turning a space into concrete configs: one value per distribution, only where it applies.

`instantiate(spec, suggest, section)` walks a section of a space (the architecture, or the
training settings) and asks `suggest(name, distribution)` for a value wherever the spec has a
distribution. A parameter is named by its field's one name (archsearch.schema.paths.qualified:
`architecture.levels.1.attention`, `architecture.block.norm.groups`, `train.lr`). Parameters
that do not apply are never asked for:

- `base` (a choice of presets) is decided first, merged with the overrides when the trial's
  config is validated; then `depth`, and `levels.N.*` beyond it do not exist;
- in a mapping with a `kind` (norm, down, up, embedding.encoding), `kind` is decided first and
  only the chosen variant's fields are kept;
- `attention.*` only when some level or the middle has attention; `attention.heads` only when
  `attention.head_channels` is not set; `skip.project` only with add-skips.

The suggester is Optuna's trial (`optuna_suggester`, which asks under the names of the study's
format version) in a study and a seeded random generator (`random_suggester`) for
`archsearch build --sample`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..schema.distributions import Choice, Distribution, as_distribution, decode_choice, is_distribution
from ..schema.paths import ARCHITECTURE, FORMAT_VERSION, TRAIN, param_name, qualified
from ..schema.space import SearchSpace, field_type
from ..schema.train import TrainConfig
from ..schema.unet import UNetConfig

__all__ = ["Suggest", "instantiate", "sample_trial_configs", "optuna_suggester", "random_suggester", "sample_configs",
           "check_candidates", "CANDIDATE_SAMPLES"]

Suggest = Callable[[str, Distribution], Any]

# Decide these first: later parts of the architecture depend on them.
_ARCH_ORDER = ("base", "depth", "image_size", "in_channels", "levels", "compact", "middle", "skip")


_SECTION_MODELS = {ARCHITECTURE: UNetConfig, TRAIN: TrainConfig}


def instantiate(spec: dict[str, Any], suggest: Suggest, section: str = ARCHITECTURE) -> dict[str, Any]:
    """A copy of `spec`, the space's `section`, with every applicable distribution replaced by a
    suggested value; `suggest` is asked by the qualified name (`<section>.<path>`)."""

    def ask(path: str, dist: Distribution) -> Any:  # the walk below knows only paths within the section
        return suggest(qualified(section, path), dist)

    if section == ARCHITECTURE:
        return _instantiate_architecture(spec, ask)
    return _resolve(spec, ask, _SECTION_MODELS[section], "")


def _instantiate_architecture(spec: dict[str, Any], suggest: Suggest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "depth" in spec:
        depth = spec["depth"]
        depth = suggest("depth", as_distribution(depth)) if is_distribution(depth) else depth
        if isinstance(spec.get("levels"), list):
            spec = {**spec, "levels": spec["levels"][:depth]}  # levels beyond the depth do not exist
    ordered = [k for k in _ARCH_ORDER if k in spec] + [k for k in spec if k not in _ARCH_ORDER]
    for key in ordered:
        if key in ("depth", "attention"):
            continue
        if key == "skip" and isinstance(spec[key], dict):
            out[key] = _resolve_skip(spec[key], suggest)
        else:
            out[key] = _resolve(spec[key], suggest, UNetConfig, key)
    if "attention" in spec:  # last: whether it applies depends on the levels and the middle
        out["attention"] = _resolve_attention(spec["attention"], suggest, _uses_attention(out))
    return out


def _uses_attention(arch: dict[str, Any]) -> bool:
    middle = arch.get("middle", {})
    # A transformer middle (no `attention` key) reads the attention section: its heads when it
    # sets none of its own, and qkv_bias.
    if middle.get("attention", True):
        return True
    if isinstance(arch.get("levels"), list):
        return any(level.get("attention", False) for level in arch["levels"])
    compact = arch.get("compact") or {}
    return bool(compact.get("attention_resolutions", [16]))


def _resolve_attention(spec, suggest: Suggest, active: bool):
    if not isinstance(spec, dict):
        return _resolve(spec, suggest, UNetConfig, "attention") if active else _drop_distributions(spec)
    if not active:
        return _drop_distributions(spec)
    out = {}
    if "head_channels" in spec:
        out["head_channels"] = _resolve(spec["head_channels"], suggest, UNetConfig, "attention.head_channels")
    for key, value in spec.items():
        if key == "head_channels":
            continue
        if key == "heads" and out.get("head_channels") is not None:
            if not is_distribution(value):
                out[key] = value
            continue
        out[key] = _resolve(value, suggest, UNetConfig, f"attention.{key}")
    return out


def _resolve_skip(spec: dict[str, Any], suggest: Suggest) -> dict[str, Any]:
    out = {}
    if "combine" in spec:
        out["combine"] = _resolve(spec["combine"], suggest, UNetConfig, "skip.combine")
    for key, value in spec.items():
        if key == "combine":
            continue
        if key == "project" and out.get("combine", "concat") == "concat" and is_distribution(value):
            continue
        out[key] = _resolve(value, suggest, UNetConfig, f"skip.{key}")
    return out


def _resolve(node: Any, suggest: Suggest, model, path: str) -> Any:
    """Resolve distributions under `node`, which sits at `path` of `model`."""
    if is_distribution(node):
        return suggest(path, as_distribution(node))
    if isinstance(node, list):
        return [_resolve(v, suggest, model, f"{path}.{i}") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    if "kind" in node:
        out["kind"] = _resolve(node["kind"], suggest, model, _join(path, "kind"))
    allowed = _variant_fields(model, path, out.get("kind"))
    for key, value in node.items():
        if key == "kind":
            continue
        if allowed is not None and key not in allowed:
            continue  # a field of another variant of this union: it does not apply
        out[key] = _resolve(value, suggest, model, _join(path, key))
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _variant_fields(model, path: str, kind: Any) -> set[str] | None:
    """Field names of the union variant `kind` at `path`, or None when there is no such union."""
    if kind is None or not path:
        return None
    from ..schema.space import _models_of, _unwrap

    try:
        tp = _unwrap(field_type(model, path))
    except KeyError:
        return None
    for variant in _models_of(tp):
        field = variant.model_fields.get("kind")
        if field is not None and field.default == kind:
            return set(variant.model_fields)
    return None


def _drop_distributions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_distributions(v) for k, v in node.items() if not is_distribution(v)}
    return node


def sample_trial_configs(space: SearchSpace, suggest: Suggest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture mapping, train mapping) for one trial; validation is the caller's."""
    return instantiate(space.architecture, suggest, ARCHITECTURE), instantiate(space.train, suggest, TRAIN)


def optuna_suggester(trial, version: int = FORMAT_VERSION) -> Suggest:
    """Ask an Optuna trial of a study of format `version`, under that version's parameter names
    (archsearch.schema.paths.param_name); choices that are not scalars travel as JSON text."""

    def suggest(field: str, dist: Distribution) -> Any:
        name = param_name(field, version)
        if isinstance(dist, Choice):
            return decode_choice(dist, trial.suggest_categorical(name, dist.encoded()))
        if dist.kind == "int":
            return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)

    return suggest


def random_suggester(seed: int = 0) -> Suggest:
    """Uniform draws (log-uniform for log ranges), in O(1) whatever the width of a range."""
    import math

    rng = random.Random(seed)

    def suggest(name: str, dist: Distribution) -> Any:
        if isinstance(dist, Choice):
            return rng.choice(dist.choices)
        if dist.log:
            value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
            return min(max(round(value), dist.low), dist.high) if dist.kind == "int" else value
        if dist.kind == "int":
            return rng.randrange(dist.low, dist.high + 1, dist.step)
        if dist.step is not None:
            return dist.low + dist.step * rng.randrange(int((dist.high - dist.low) / dist.step + 1e-9) + 1)
        return rng.uniform(dist.low, dist.high)

    return suggest


def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[UNetConfig]:
    """`n` sampled architectures, validated and planned (for `archsearch build --sample`).

    A sample the planner rejects raises its errors, prefixed with `architecture`.
    """
    from ..schema.loading import unet_config_from_dict

    suggest = random_suggester(seed)
    return [unet_config_from_dict(instantiate(space.architecture, suggest), prefix=ARCHITECTURE) for _ in range(n)]


# How many random architectures `check_candidates` plans: enough to see a space that is mostly
# invalid, few enough to take well under a second (the planner is pure Python).
CANDIDATE_SAMPLES = 200


def check_candidates(space: SearchSpace, n: int = CANDIDATE_SAMPLES, seed: int = 0) -> tuple[int, list[tuple[str, int]]]:
    """Plan `n` seeded random architectures of the space: (how many are valid, the commonest
    rejections as (error line, count), commonest first).

    Raises ConfigErrors when none is valid: such a space would record nothing but `invalid`
    trials. A space without distributions was planned when it was loaded.
    """
    from collections import Counter

    from ..errors import ConfigError, ConfigErrors
    from ..schema.loading import unet_config_from_dict

    from ..schema.space import walk_distributions

    if not any(True for _ in walk_distributions(space.architecture)):
        return n, []
    suggest, valid, reasons = random_suggester(seed), 0, Counter()
    errors_by_line: dict[str, ConfigError] = {}
    for _ in range(n):
        try:
            unet_config_from_dict(instantiate(space.architecture, suggest), prefix=ARCHITECTURE)
            valid += 1
        except ConfigErrors as exc:
            first = exc.errors[0]
            reasons[str(first)] += 1
            errors_by_line.setdefault(str(first), first)
    common = reasons.most_common(3)
    if valid == 0:
        head = ConfigError(ARCHITECTURE, f"0 of {n} sampled architectures are valid; the commonest reasons:")
        raise ConfigErrors([head] + [ConfigError(errors_by_line[line].path, f"{errors_by_line[line].message} "
                                                 f"({count} of {n} samples)") for line, count in common])
    return valid, common

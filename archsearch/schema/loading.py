"""Reading config files: YAML -> plain data -> validated models, every problem as `path: message`.

    config = load_unet_config("my_unet.yaml")       # UNetConfig, planned (cross-field rules checked)
    config = unet_config_from_dict({"base": "seed", "image_size": 64})

An architecture may start from a preset (`base: NAME`), or from a diffusers UNet2DModel's
`config.json` (`base: diffusers:PATH`, a local file; archsearch.schema.diffusers), and override
any of its fields; the override is merged key by key into the base (lists are replaced whole).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ConfigErrors, excerpt
from ._base import validate_model
from .unet import UNetConfig
from .yaml_file import read_yaml

__all__ = [
    "PRESETS",
    "read_yaml",
    "preset_dict",
    "base_dict",
    "deep_merge",
    "resolve_base",
    "unet_config_from_dict",
    "load_unet_config",
    "validate_model",
    "read_study_file",
]

PRESETS = ("seed", "ddpm-cifar10", "adm-imagenet64", "edm-adm-imagenet64", "edm-ddpmpp-cifar10", "edm-ncsnpp-cifar10", "edm2-img512-xs", "edm2-img64-s")


def preset_dict(name: str) -> dict[str, Any]:
    """The fields of a shipped preset, as plain data."""
    if name not in PRESETS:
        raise ConfigErrors([ConfigError("base", f"unknown preset {excerpt(name)}; choose one of {', '.join(PRESETS)}")])
    text = resources.files("archsearch.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged into `base`: mappings recursively, everything else (lists too) replaced.

    A union member switching kind (`down: {kind: maxpool}` over `{kind: conv, padding: same}`)
    replaces the mapping whole, so options of the old kind do not leak into the new one.
    """
    from .distributions import is_distribution

    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if is_distribution(value) or is_distribution(old):
            out[key] = value
            continue
        same_kind = not (isinstance(value, dict) and isinstance(old, dict) and "kind" in value and value.get("kind") != old.get("kind"))
        if isinstance(value, dict) and isinstance(old, dict) and same_kind:
            out[key] = deep_merge(old, value)
        else:
            out[key] = value
    # `levels` and `compact` are two spellings of one thing: writing one drops the other.
    for a, b in (("levels", "compact"), ("compact", "levels")):
        if a in override and b in base and b not in override:
            out.pop(b, None)
    return out


def base_dict(name: Any) -> dict[str, Any]:
    """The fields a `base:` names: a preset, or `diffusers:PATH` (a UNet2DModel config.json)."""
    from .diffusers import PREFIX, read_diffusers_config, unet_dict_from_diffusers

    if isinstance(name, str) and name.startswith(PREFIX):
        path = name[len(PREFIX):]
        try:
            return unet_dict_from_diffusers(read_diffusers_config(path))
        except ConfigErrors as exc:  # every option it cannot build, each naming the file
            raise ConfigErrors(ConfigError(e.path, f"{name}: {e.message}") for e in exc.errors) from None
    return preset_dict(name)


def resolve_base(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Expand `base: PRESET` (or `base: diffusers:PATH`) into its fields with `data`'s overrides on top."""
    if "base" not in data:
        return dict(data)
    rest = {k: v for k, v in data.items() if k != "base"}
    try:
        base = base_dict(data["base"])
    except ConfigErrors as exc:
        raise exc.prefixed(prefix) from None
    return deep_merge(base, rest)


def unet_config_from_dict(data: dict[str, Any], prefix: str = "", plan: bool = True) -> UNetConfig:
    """Validate an architecture mapping (with an optional `base`) and check its cross-field rules."""
    config = validate_model(UNetConfig, resolve_base(data, prefix), prefix)
    if plan:
        from ..plan import plan_unet

        try:
            plan_unet(config)
        except ConfigErrors as exc:
            raise exc.prefixed(prefix) from None
    return config


def read_study_file(path: str | Path, sets: dict[str, Any] | None = None) -> dict[str, Any]:
    """A space or ablation file as data: `--set path=value` overrides applied, and the study
    named after the file unless it says otherwise."""
    from .paths import apply_sets

    data = apply_sets(read_yaml(path), sets)
    study = data.get("study")
    if study is None or (isinstance(study, dict) and "name" not in study):
        data["study"] = {**(study or {}), "name": Path(path).stem}
    return data


def load_unet_config(path: str | Path) -> UNetConfig:
    """Read, validate and plan a U-Net config file."""
    return unet_config_from_dict(read_yaml(path))

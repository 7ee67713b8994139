"""Which kind of config file is this? One entry point for `archsearch validate` and `build`.

- a **space file** has a section of its own (`architecture`, `study`, `data`, `train`, ...; a
  train file is a space file without distributions);
- an **ablation file** has `variants`;
- anything else is read as a **U-Net config** (the fields of `UNetConfig`, or `base: PRESET`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .loading import read_yaml, unet_config_from_dict
from .paths import set_path

__all__ = ["load_any", "json_schema"]

# Sections only a space file has (no UNetConfig field is named so): `data: ...` alone is a space.
_SPACE_SECTIONS = {"architecture", "study", "data", "train", "eval", "measure", "objectives", "constraints"}


def load_any(path: str | Path, sets: dict[str, Any] | None = None) -> tuple[str, Any]:
    """(kind, validated object) for a file; raises ConfigErrors listing every problem."""
    data = read_yaml(path)
    if "variants" in data:
        from .ablation import load_ablation

        return "ablation file", load_ablation(path, sets)
    if _SPACE_SECTIONS & data.keys():
        from .space import load_space

        return "space file", load_space(path, sets)
    for key, value in (sets or {}).items():
        data = set_path(data, key, value)
    return "U-Net config", unet_config_from_dict(data)


def json_schema(kind: str = "space") -> dict[str, Any]:
    """JSON Schema for editor completion. In space files every field also accepts a distribution."""
    from .distributions import Choice, FloatRange, IntRange
    from .space import SearchSpace
    from .unet import UNetConfig

    if kind == "unet":
        return UNetConfig.model_json_schema()
    if kind == "ablation":
        from .ablation import AblationSpec

        return AblationSpec.model_json_schema()
    if kind != "space":
        from ..errors import ConfigError, ConfigErrors

        raise ConfigErrors([ConfigError("kind", f"unknown schema {kind!r}; use unet, space or ablation")])
    schema = SearchSpace.model_json_schema()
    unet = UNetConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(unet.pop("$defs", {}))
    defs["UNetConfig"] = unet
    defs["Distribution"] = {
        "description": "A search distribution: {choice: [...]}, {int: [low, high]} or {float: {low, high, log}}",
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "choice": {"type": "array"},
            "int": {"anyOf": [{"type": "array"}, IntRange.model_json_schema()]},
            "float": {"anyOf": [{"type": "array"}, FloatRange.model_json_schema()]},
        },
    }
    del Choice
    for name, definition in list(defs.items()):
        if name == "Distribution":
            continue
        for prop, sub in definition.get("properties", {}).items():
            definition["properties"][prop] = {"anyOf": [sub, {"$ref": "#/$defs/Distribution"}]}
    arch = {"$ref": "#/$defs/UNetConfig"}
    unet.setdefault("properties", {})["base"] = {"type": "string", "description": "Start from a preset: seed, ddpm-cifar10, adm-imagenet64."}
    unet["properties"]["depth"] = {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/Distribution"}], "description": "Keep the first `depth` levels."}
    unet.pop("required", None)
    schema["properties"]["architecture"] = arch
    return schema

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
from .paths import apply_sets

__all__ = ["load_any", "file_kind", "json_schema", "schema_id", "SCHEMA_KINDS"]


def file_kind(data: dict[str, Any]) -> str:
    """`ablation`, `space` or `unet`: the kind of a parsed config file, which names its JSON Schema."""
    if "variants" in data:
        return "ablation"
    if _SPACE_SECTIONS & data.keys():
        return "space"
    return "unet"

# Sections only a space file has (no UNetConfig field is named so): `data: ...` alone is a space.
_SPACE_SECTIONS = {"architecture", "study", "data", "train", "eval", "measure", "objectives", "constraints"}


def load_any(path: str | Path, sets: dict[str, Any] | None = None) -> tuple[str, Any]:
    """(kind, validated object) for a file; raises ConfigErrors listing every problem."""
    data = read_yaml(path)
    kind = file_kind(data)
    if kind == "ablation":
        from .ablation import load_ablation

        return "ablation file", load_ablation(path, sets)
    if kind == "space":
        from .space import load_space

        return "space file", load_space(path, sets)
    return "U-Net config", unet_config_from_dict(apply_sets(data, sets))


SCHEMA_KINDS = ("unet", "space", "ablation")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_id(kind: str) -> str:
    return f"https://archsearch.dev/schema/{kind}.json"


def json_schema(kind: str = "space") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file kind, for editors and validators.

    `unet` is a U-Net config file (`base: PRESET` + overrides, or every field); `space` a space
    file, where every field also accepts a distribution; `ablation` an ablation file.
    """
    if kind not in SCHEMA_KINDS:
        from ..errors import ConfigError, ConfigErrors, excerpt

        raise ConfigErrors([ConfigError("kind", f"unknown schema {excerpt(kind)}; use unet, space or ablation")])
    schema = {"unet": _unet_file_schema, "space": _space_schema, "ablation": _ablation_schema}[kind]()
    return {"$schema": SCHEMA_DIALECT, "$id": schema_id(kind), **schema}


def _unet_file_schema() -> dict[str, Any]:
    """UNetConfig's fields, all optional, plus `base`: a preset the other fields override."""
    from .loading import PRESETS
    from .unet import UNetConfig

    schema = UNetConfig.model_json_schema()
    schema["properties"] = {
        "base": {"anyOf": [{"enum": list(PRESETS)}, {"type": "string", "pattern": "^diffusers:."}],
                 "description": "Start from a preset, or from a diffusers UNet2DModel config.json "
                                "(diffusers:PATH); the other fields override its values."},
        **schema["properties"],
    }
    schema.pop("required", None)
    return schema


def _space_schema() -> dict[str, Any]:
    from .distributions import FloatRange, IntRange
    from .space import SearchSpace

    schema = SearchSpace.model_json_schema()
    unet = _unet_file_schema()
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
    for name, definition in list(defs.items()):
        if name == "Distribution":
            continue
        for prop, sub in definition.get("properties", {}).items():
            definition["properties"][prop] = {"anyOf": [sub, {"$ref": "#/$defs/Distribution"}]}
    unet["properties"]["depth"] = {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/Distribution"}],
                                   "description": "Keep the first `depth` levels."}
    schema["properties"]["architecture"] = {"$ref": "#/$defs/UNetConfig"}
    return schema


def _ablation_schema() -> dict[str, Any]:
    from .ablation import AblationSpec

    schema = AblationSpec.model_json_schema()
    unet = _unet_file_schema()
    schema.setdefault("$defs", {}).update(unet.pop("$defs", {}))
    schema["$defs"]["UNetConfig"] = unet
    base = schema["properties"]["base"]
    schema["properties"]["base"] = {"$ref": "#/$defs/UNetConfig", "description": base.get("description", "")}
    return schema

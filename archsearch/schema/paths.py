"""Dotted paths into nested config data (`block.norm.groups`, `levels.2.attention`), and the one
name of a searched field.

A field of a space file is named by its section and its dotted path in it:
`architecture.levels.1.width`, `train.lr` (`qualified`). That one string is the `--set` path,
the error path, the Optuna parameter name and the results-table column, so a user who reads it
anywhere can find the field. `param_name` and `field_name` are the only translation: studies
written before the name was one (format version 1) named the architecture's parameters without
their section (`levels.1.width`), and a resumed one must keep asking for those names, or the
sampler would not see its history.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import ConfigError, ConfigErrors, excerpt

__all__ = ["split_path", "path_problem", "get_path", "set_path", "apply_sets", "flatten", "ARCHITECTURE", "TRAIN",
           "SECTIONS", "qualified", "section_of", "FORMAT_VERSION", "FORMAT_ATTR", "format_version", "param_name", "field_name"]

# The sections of a space file that a trial samples from (fields of archsearch.schema.space.SearchSpace).
ARCHITECTURE = "architecture"
TRAIN = "train"
SECTIONS = (ARCHITECTURE, TRAIN)

# The study format this version writes, recorded as the study's user attribute FORMAT_ATTR.
# 1 (no attribute): architecture parameters named without their section; 2: every name qualified.
FORMAT_VERSION = 2
FORMAT_ATTR = "format_version"


def split_path(path: str) -> list[str | int]:
    """`levels.2.width` -> ["levels", 2, "width"] (all-digit parts are list indices)."""
    return [int(p) if p.isdigit() else p for p in path.split(".") if p != ""]


# One part of a dotted path: a field name, a list index, or a variant name (`add-skips`, `mp+lr`).
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+-]*")


def path_problem(path: str) -> str | None:
    """What is wrong with a dotted path a user wrote (`train..steps`, `levels.0 .width`), or None."""
    if not path:
        return "the path is empty"
    if any(c.isspace() for c in path):
        return "a path has no spaces in it"
    if path.startswith(".") or path.endswith("."):
        return f"the path {'starts' if path.startswith('.') else 'ends'} with a dot"
    parts = path.split(".")
    if "" in parts:
        return "the path has an empty part (two dots in a row)"
    bad = next((p for p in parts if not _PART.fullmatch(p)), None)
    if bad is not None:
        return f"{excerpt(bad)} is neither a field name nor a list index"
    return None


def get_path(data: Any, path: str, default: Any = None) -> Any:
    node = data
    for part in split_path(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return default
    return node


def set_path(data: dict, path: str, value: Any) -> dict:
    """A copy of `data` with `path` set to `value`, creating mappings on the way; a malformed
    path (`path_problem`) is an error."""
    problem = path_problem(path)
    if problem:
        raise ConfigErrors([ConfigError(path, f"{problem}; write dotted field names such as train.steps or levels.0.width")])
    parts = split_path(path)
    out = copy.deepcopy(data)
    node = out
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ConfigErrors([ConfigError(path, f"index {part} is out of range (the list has {len(node)} items)")])
        elif not isinstance(node.get(part), (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigErrors([ConfigError(path, f"index {last} is out of range (the list has {len(node)} items)")])
    node[last] = value
    return out


def apply_sets(data: dict, sets: dict[str, Any] | None) -> dict:
    """A copy of `data` with every `--set path=value` override applied, in order."""
    for path, value in (sets or {}).items():
        data = set_path(data, path, value)
    return data


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists -> {dotted path: leaf value} (lists of scalars stay whole)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = data
    return out


def qualified(section: str, path: str) -> str:
    """The one name of the field at `path` of a space section: `architecture.levels.1.width`."""
    return f"{section}.{path}" if path else section


def section_of(name: str) -> str | None:
    """The section a qualified name lies in (`train.lr` -> `train`), or None."""
    head = name.split(".", 1)[0]
    return head if head in SECTIONS else None


def format_version(study_attrs: dict[str, Any]) -> int:
    """The format version of a study, from its user attributes (1 when it records none)."""
    return int(study_attrs.get(FORMAT_ATTR, 1))


def param_name(name: str, version: int = FORMAT_VERSION) -> str:
    """The Optuna parameter name of the field `name` in a study of format `version`."""
    if version < 2 and section_of(name) == ARCHITECTURE:
        return name[len(ARCHITECTURE) + 1:]
    return name


def field_name(param: str) -> str:
    """The field a stored Optuna parameter of any format version names: `param_name` undone.

    Unambiguous without the version: no architecture field is called `architecture` or `train`.
    """
    return param if section_of(param) else qualified(ARCHITECTURE, param)
